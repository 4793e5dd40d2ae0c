"""Gas of the LivingNFT operations, measured on a fresh embedded anvil with the committed artifact.

Prints ONE JSON line: the figures, the issue's targets and each figure's ratio to its target (<= 1.0
meets it), plus the OpenZeppelin ERC721URIStorage anchors from the issue for comparison.

    .venv/bin/python bench/gas.py
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collections.abc import Callable, Sequence

from contracts.cid import raw_cid_of
from contracts.client import LivingNFTClient
from contracts.localchain import DEV_PRIVATE_KEYS, LOCAL_CHAIN_ID, LocalChain
from contracts.signer import Signer, make_web3
from metadata.store import LocalStore

TARGETS = {
    "mint_gas": 90_000,
    "evolve_gas": 40_000,
    "evolve_batch100_gas_per_token": 12_000,
    "mint_batch100_gas_per_token": 15_000,
}
# Issue #13's moonshot for a 100-token drop (lazy ownership and one folder per drop).
MOONSHOTS = {"mint_batch100_gas_per_token": 5_000}
# Evolving a token of mintBatch must cost no more than evolving a singly minted one (issue #13), and a drop
# token, once it has its own digest (after its first evolution), evolves like any token.
SAME_AS_SINGLE = {"evolve_batch_minted_gas": "evolve_first_gas", "evolve_after_drop_gas": "evolve_again_gas"}
ANCHORS_URISTORAGE = {"mint_gas": 151_089, "evolve_gas": 49_252, "evolve_batch100_gas_per_token": 25_605}


def cid(label: str) -> str:
    return raw_cid_of(hashlib.sha256(label.encode()).digest())


def drop_files(label: str, count: int) -> list[bytes]:
    """`count` small metadata JSON files, like a collection's."""
    return [
        json.dumps({"name": f"{label} #{i}", "image": f"ipfs://bafy/{i}.png", "attributes": []}).encode()
        for i in range(count)
    ]


def folder_pinner(store: LocalStore, root: Path, files: list[bytes]) -> Callable[[int, Sequence[str]], str]:
    """A `pin_folder` for mint_drop: the real folder of `<tokenId>.json` files, added to a local store."""

    def pin_folder(first_token_id: int, cids: Sequence[str]) -> str:
        folder = root / f"drop-{first_token_id}"
        folder.mkdir()
        by_cid = {raw_cid_of(data): data for data in files}
        for offset, metadata_cid in enumerate(cids):
            (folder / f"{first_token_id + offset}.json").write_bytes(by_cid[metadata_cid])
        return store.add_directory(folder)

    return pin_folder


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, LocalChain(Path(tmp), port=0) as chain:
        w3 = make_web3(chain.rpc_url)
        signer = Signer.from_private_key(w3, DEV_PRIVATE_KEYS[0], chain_id=LOCAL_CHAIN_ID)
        artist = Signer.from_private_key(w3, DEV_PRIVATE_KEYS[1], chain_id=LOCAL_CHAIN_ID).address
        client, deployed = LivingNFTClient.deploy(
            signer, name="Bench", symbol="B", royalty_receiver=signer.address, royalty_bps=500
        )
        client.grant_role("MINTER_ROLE", signer.address)
        client.grant_role("EVOLVER_ROLE", signer.address)

        first_mint = client.mint(artist, cid("m0"))
        mints = [client.mint(artist, cid(f"m{i}")) for i in range(1, 101)]  # owner already holds a token
        later_mint_gas = [m.gas_used for m in mints]

        # Single evolves: tokens never evolved before (version 0 -> 1) and again (1 -> 2).
        first_evolve = [client.evolve(t, cid(f"e1-{t}"), 0).gas_used for t in (2, 3, 4, 5, 6)]
        second_evolve = [client.evolve(t, cid(f"e2-{t}"), 1).gas_used for t in (2, 3, 4, 5, 6)]

        batch_ids = [m.token_id for m in mints]  # 100 consecutive tokens (2..101)
        # Tokens 2..6 are at version 2 after the single evolves, the others at 0.
        version = {t: 2 if t <= 6 else 0 for t in batch_ids}
        first_batch = client.evolve_batch([(t, cid(f"b1-{t}"), version[t]) for t in batch_ids])
        second_batch = client.evolve_batch([(t, cid(f"b2-{t}"), version[t] + 1) for t in batch_ids])
        assert len(first_batch) == 1, "a batch of 100 must fit one transaction"
        assert len(second_batch) == 1, "a batch of 100 must fit one transaction"
        scattered_ids = batch_ids[::4][:25]  # 25 tokens, each alone in its version word
        scattered = client.evolve_batch([(t, cid(f"b3-{t}"), version[t] + 2) for t in scattered_ids])

        # A 100-token mintBatch (digests stored, ids 102..201), to an owner who already holds tokens, then the
        # first evolution of some of its tokens, alone and in a batch (the same shapes as above).
        (drop,) = client.mint_batch(artist, [cid(f"d{i}") for i in range(100)])
        dropped = drop.token_ids
        assert len(dropped) == 100, "a 100-token batch must fit one transaction"
        drop_evolve = [client.evolve(t, cid(f"de1-{t}"), 0).gas_used for t in dropped[1:6]]
        drop_batch = client.evolve_batch([(t, cid(f"db1-{t}"), 1 if t in dropped[1:6] else 0) for t in dropped])

        # A 100-token mintDrop (one folder, no digest stored, ids 202..301) to an owner holding no token yet,
        # the first evolutions of some of its tokens (each stores the token's own digest) and their second;
        # then another drop whose 100 tokens all evolve for the first time in one batch.
        store = LocalStore(Path(tmp) / "store")
        fresh_owner = Signer.from_private_key(w3, DEV_PRIVATE_KEYS[3], chain_id=LOCAL_CHAIN_ID).address
        files = drop_files("Drop", 100)
        pin = folder_pinner(store, Path(tmp), files)
        (folder_drop,) = client.mint_drop(fresh_owner, [raw_cid_of(f) for f in files], pin_folder=pin)
        in_folder = folder_drop.token_ids
        assert len(in_folder) == 100, "a 100-token drop must fit one transaction"
        assert client.token_uri(in_folder[1]).endswith(f"/{in_folder[1]}.json"), "a drop token reads its folder"
        first_after_drop = [client.evolve(t, cid(f"fe1-{t}"), 0).gas_used for t in in_folder[1:6]]
        after_drop = [client.evolve(t, cid(f"fe2-{t}"), 1).gas_used for t in in_folder[1:6]]
        files2 = drop_files("Second drop", 100)
        pin2 = folder_pinner(store, Path(tmp), files2)
        (second_drop,) = client.mint_drop(fresh_owner, [raw_cid_of(f) for f in files2], pin_folder=pin2)
        drop_first_batch = client.evolve_batch([(t, cid(f"fb1-{t}"), 0) for t in second_drop.token_ids])
        assert len(drop_first_batch) == 1, "a batch of 100 must fit one transaction"

        # Transfers (not targets): a batch-minted token without an owner slot of its own pays for its slot
        # (and its successor's) at its first transfer, as with ERC721A.
        holder = Signer.from_private_key(w3, DEV_PRIVATE_KEYS[1], chain_id=LOCAL_CHAIN_ID)
        as_artist = LivingNFTClient(holder, client.address, from_block=client.from_block)
        as_artist.transfer(signer.address, batch_ids[9])  # the receiver holds a token from now on
        transfer_single = as_artist.transfer(signer.address, batch_ids[10]).gas_used
        # dropped[1] has no slot, nor has its successor: the worst case.
        transfer_lazy = as_artist.transfer(signer.address, dropped[1]).gas_used
        transfer_lazy_again = LivingNFTClient(signer, client.address).transfer(artist, dropped[1]).gas_used

        figures = {
            "deploy_gas": deployed.gas_used,
            "first_mint_gas": first_mint.gas_used,
            "mint_gas": max(later_mint_gas),
            "mint_gas_min": min(later_mint_gas),
            "evolve_gas": max(first_evolve + second_evolve),
            "evolve_first_gas": max(first_evolve),
            "evolve_again_gas": max(second_evolve),
            "evolve_batch100_gas_per_token": max(first_batch[0].gas_used, second_batch[0].gas_used) / 100,
            "evolve_batch100_first_gas_per_token": first_batch[0].gas_used / 100,
            "evolve_batch100_again_gas_per_token": second_batch[0].gas_used / 100,
            "evolve_batch25_scattered_gas_per_token": scattered[0].gas_used / len(scattered_ids),
            "mint_batch100_gas_per_token": folder_drop.gas_used / 100,
            "mint_batch100_gas": folder_drop.gas_used,
            "evolve_first_after_drop_gas": max(first_after_drop),
            "evolve_after_drop_gas": max(after_drop),
            "evolve_batch100_first_after_drop_gas_per_token": drop_first_batch[0].gas_used / 100,
            "mint_batch100_stored_gas_per_token": drop.gas_used / 100,
            "mint_batch100_stored_gas": drop.gas_used,
            "evolve_batch_minted_gas": max(drop_evolve),
            "evolve_batch100_batch_minted_gas_per_token": drop_batch[0].gas_used / 100,
            "transfer_gas": transfer_single,
            "transfer_batch_minted_first_gas": transfer_lazy,
            "transfer_batch_minted_again_gas": transfer_lazy_again,
            "token_uri_call_gas": w3.eth.estimate_gas(
                {"to": client.address, "data": client.contract.encode_abi("tokenURI", args=[2])}
            ),
            "token_uri_drop_call_gas": w3.eth.estimate_gas(
                {"to": client.address, "data": client.contract.encode_abi("tokenURI", args=[in_folder[50]])}
            ),
        }
        line = {
            **figures,
            "targets": TARGETS,
            "ratios": {k: round(figures[k] / v, 3) for k, v in TARGETS.items()},
            "meets_targets": all(figures[k] <= v for k, v in TARGETS.items()),
            "moonshots": MOONSHOTS,
            "moonshot_ratios": {k: round(figures[k] / v, 3) for k, v in MOONSHOTS.items()},
            "batch_minted_evolves_as_cheaply": all(figures[k] <= figures[v] for k, v in SAME_AS_SINGLE.items()),
            "anchors_erc721_uri_storage": ANCHORS_URISTORAGE,
            "ratios_to_anchor": {k: round(figures[k] / v, 3) for k, v in ANCHORS_URISTORAGE.items()},
            "chain": "anvil 1.7.1 (cancun), committed artifact",
        }
        print(json.dumps(line))


if __name__ == "__main__":
    main()
