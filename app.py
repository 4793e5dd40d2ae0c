"""Living NFT Studio web app entry point (`make run`)."""


def main() -> None:
    raise SystemExit("The studio app is not built yet.")


if __name__ == "__main__":
    main()
