"""mintDrop on a real anvil, through the client, with real folders built by the studio's own store: a drop
token reads `<id>.json` in its drop's folder until its first evolution, and a marketplace reads it like any
token (Transfer, MetadataSet history, tokenURI resolving to its own JSON, freeze, royalties)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from web3.logs import DISCARD

from contracts.cid import folder_cid_digest, folder_cid_from_digest, raw_cid_of
from contracts.client import BatchMintError, LivingNFTClient
from contracts.errors import ContractRevertError, UnexpectedFirstTokenIdError, UnstorableCIDError
from contracts.reader import DropRecord
from contracts.signer import Signer
from metadata.store import LocalStore

ZERO = "0x0000000000000000000000000000000000000000"


@pytest.fixture
def collector(chain_w3, funded_account) -> Signer:
    return Signer(chain_w3, funded_account, chain_id=31337)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _files(label: str, count: int) -> dict[str, bytes]:
    """Metadata JSON files by their raw CID (what MetadataSet names and a token's history starts from)."""
    files = [
        json.dumps({"name": f"{label} #{i}", "image": f"ipfs://bafy/{label}/{i}.png"}).encode() for i in range(count)
    ]
    return {raw_cid_of(data): data for data in files}


class FolderPinner:
    """A real `pin_folder`: writes `<tokenId>.json` for each CID into a new folder and adds it to the store."""

    def __init__(self, store: LocalStore, root: Path, files: dict[str, bytes]) -> None:
        self.store, self.root, self.files = store, root, files
        self.calls: list[tuple[int, list[str], str]] = []
        self.made = 0

    def __call__(self, first_token_id: int, cids: Sequence[str]) -> str:
        self.made += 1
        folder = self.root / f"folder-{self.made}"
        folder.mkdir()
        for offset, cid in enumerate(cids):
            (folder / f"{first_token_id + offset}.json").write_bytes(self.files[cid])
        folder_cid = self.store.add_directory(folder)
        self.calls.append((first_token_id, list(cids), folder_cid))
        return folder_cid


def test_folder_cids_round_trip_kubos_folder_cid():
    # kubo's `ipfs add -r --cid-version=1` of the reference folder dir3 (../shared/reference/ipfs-cids.json).
    kubo = "bafybeih7vvdheh26ixtcbjv6h2x5phtuebevdpi24o3ucyl3srghthp4iq"
    digest = folder_cid_digest("ipfs://" + kubo)
    assert digest.hex() == "ffad46721f5e45e620a6be3eafd79e74204951bd1ae3b741617b944c799dfc44"
    assert folder_cid_from_digest(digest) == kubo
    with pytest.raises(UnstorableCIDError, match="32 bytes"):
        folder_cid_from_digest(b"short")


def _logs(client: LivingNFTClient, tx_hash: str, event: str) -> list:
    receipt = client.signer.receipt(tx_hash)
    return list(getattr(client.contract.events, event)().process_receipt(receipt, errors=DISCARD))


def test_drop_tokens_read_their_folder_files_until_their_first_evolution(
    living_nft, collector, store, tmp_path, make_cid
):
    single = living_nft.mint(collector.address, make_cid("before")).token_id
    files = _files("drop", 12)
    cids = list(files)
    pin = FolderPinner(store, tmp_path, files)

    (result,) = living_nft.mint_drop(collector.address, cids, pin_folder=pin)

    ((first, pinned_cids, folder),) = pin.calls
    assert (first, pinned_cids) == (single + 1, cids)
    assert folder.startswith("bafybei")
    assert result.folder_cid == folder
    assert result.token_ids == list(range(single + 1, single + 13))
    assert result.metadata_cids == cids
    transfers = _logs(living_nft, result.tx_hash, "Transfer")
    assert [(e["args"]["from"], e["args"]["to"], e["args"]["tokenId"]) for e in transfers] == [
        (ZERO, collector.address, t) for t in result.token_ids
    ]
    (dropped,) = _logs(living_nft, result.tx_hash, "DropMinted")
    assert dict(dropped["args"]) == {
        "firstTokenId": single + 1,
        "lastTokenId": single + 12,
        "folderDigest": folder_cid_digest(folder),
    }
    (refresh,) = _logs(living_nft, result.tx_hash, "BatchMetadataUpdate")
    assert (refresh["args"]["_fromTokenId"], refresh["args"]["_toTokenId"]) == (single + 1, single + 12)

    for token_id, cid in zip(result.token_ids, cids, strict=True):
        uri = living_nft.token_uri(token_id)
        assert uri == f"ipfs://{folder}/{token_id}.json"
        # What a marketplace does with the URI: the folder's file is the token's own JSON.
        assert store.cat(folder, f"{token_id}.json") == files[cid]
        assert living_nft.metadata_cid(token_id) is None  # still its drop's file
        assert living_nft.drop_of(token_id) == DropRecord(single + 1, single + 12, folder)
        assert living_nft.metadata_version(token_id) == 0
        assert living_nft.owner_of(token_id) == collector.address
        assert [(h.version, h.metadata_cid, h.tx_hash) for h in living_nft.history(token_id)] == [
            (0, cid, result.tx_hash)
        ]
    assert living_nft.contract.functions.balanceOf(collector.address).call() == 13
    assert living_nft.drop_of(single) is None
    assert living_nft.metadata_cid(single) == make_cid("before")

    # The first evolution stores the token's own digest: from then on it is like any token.
    token = result.token_ids[4]
    first_evolve = living_nft.evolve(token, make_cid("v1"), 0)
    assert living_nft.token_uri(token) == "ipfs://" + make_cid("v1")
    assert living_nft.metadata_cid(token) == make_cid("v1")
    assert [(h.version, h.metadata_cid) for h in living_nft.history(token)] == [(0, cids[4]), (1, make_cid("v1"))]
    assert living_nft.drop_of(token) == DropRecord(single + 1, single + 12, folder)
    assert living_nft.token_uri(token + 1) == f"ipfs://{folder}/{token + 1}.json"
    second_evolve = living_nft.evolve(token, make_cid("v2"), 1)
    on_single = living_nft.evolve(single, make_cid("before-v1"), 0)
    again_on_single = living_nft.evolve(single, make_cid("before-v2"), 1)
    # The second evolution costs what any costs (up to calldata: a digest's zero bytes are cheaper).
    assert abs(second_evolve.gas_used - again_on_single.gas_used) <= 64
    assert first_evolve.gas_used > on_single.gas_used  # the first pays for the token's own digest slot

    # Freezing a never-evolved drop token fixes its folder URI; royalties as on any token.
    owner_view = LivingNFTClient(collector, living_nft.address, from_block=living_nft.from_block)
    owner_view.freeze(result.token_ids[6])
    (frozen,) = living_nft.freezes(result.token_ids[6])
    assert frozen.uri == f"ipfs://{folder}/{result.token_ids[6]}.json"
    assert living_nft.royalty_info(result.token_ids[7], 10_000) == (living_nft.signer.address, 500)
    owner_view.transfer(living_nft.signer.address, result.token_ids[2])
    assert living_nft.owner_of(result.token_ids[2]) == living_nft.signer.address
    assert living_nft.owner_of(result.token_ids[3]) == collector.address


def test_mint_drop_is_split_under_a_gas_budget_with_a_folder_per_part(living_nft, collector, store, tmp_path):
    files = _files("split", 12)
    cids = list(files)
    pin = FolderPinner(store, tmp_path, files)
    first_id = living_nft.total_supply() + 1
    folder_for_estimate = pin(first_id, cids)  # the estimate needs a real folder CID; the gas does not depend on it
    pin.calls.clear()
    whole = living_nft.estimate_mint_drop(collector.address, first_id, folder_for_estimate, cids)
    budget = 200_000
    broadcast: list[tuple[list[str], str, int]] = []
    mined: list[list[int]] = []

    results = living_nft.mint_drop(
        collector.address,
        cids,
        pin_folder=pin,
        gas_budget=budget,
        before_broadcast=lambda part, tx_hash, nonce: broadcast.append((list(part), tx_hash, nonce)),
        on_mined=lambda r: mined.append(r.token_ids),
    )

    assert whole * living_nft.signer.policy.gas_buffer > budget
    assert len(results) > 1
    assert [cid for r in results for cid in r.metadata_cids] == cids
    assert [t for r in results for t in r.token_ids] == list(range(first_id, first_id + 12))
    assert [(part, tx) for part, tx, _ in broadcast] == [(r.metadata_cids, r.tx_hash) for r in results]
    assert mined == [r.token_ids for r in results]
    assert [(f, c) for f, c, _ in pin.calls] == [(r.token_ids[0], r.metadata_cids) for r in results]
    for result in results:
        assert living_nft.w3.eth.get_transaction(result.tx_hash)["gas"] <= budget
        for token_id in result.token_ids:
            assert living_nft.token_uri(token_id) == f"ipfs://{result.folder_cid}/{token_id}.json"
            assert living_nft.drop_of(token_id) == DropRecord(
                result.token_ids[0], result.token_ids[-1], str(result.folder_cid)
            )


@pytest.mark.parametrize(
    "bad_folder",
    [
        "bafkreiaemm7zgq34aqab2qnjvmogblw6qn5qsait4zpkke6wbvwobp2kpm",  # a raw file CID, not a folder
        "QmYwdqDS4ESrweDe5acA8RQvebhqQaj6rfyUW2HhbgE91Y",  # the same folder as CIDv0
        "",
    ],
)
def test_mint_drop_refuses_a_folder_cid_that_is_not_cidv1_dag_pb_before_sending(
    living_nft, collector, make_cid, bad_folder
):
    nonce = living_nft.signer.mined_nonce()
    with pytest.raises(UnstorableCIDError, match="dag-pb"):
        living_nft.mint_drop(
            collector.address, [make_cid("a"), make_cid("b")], pin_folder=lambda first, cids: bad_folder
        )
    with pytest.raises(UnstorableCIDError, match="dag-pb"):
        living_nft.estimate_mint_drop(collector.address, 1, bad_folder, [make_cid("a")])
    assert living_nft.signer.mined_nonce() == nonce  # nothing was sent
    assert living_nft.total_supply() == 0


def test_mint_drop_refuses_bad_metadata_cids_before_pinning(living_nft, collector, make_cid):
    pinned: list[int] = []

    def pin(first: int, cids: Sequence[str]) -> str:
        pinned.append(first)
        return "bafybeih7vvdheh26ixtcbjv6h2x5phtuebevdpi24o3ucyl3srghthp4iq"

    assert living_nft.mint_drop(collector.address, [], pin_folder=pin) == []
    with pytest.raises(UnstorableCIDError):
        living_nft.mint_drop(
            collector.address, [make_cid("ok"), "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"], pin_folder=pin
        )
    assert pinned == []


def test_a_mint_between_pinning_and_sending_is_refused_with_unexpected_first_token_id(
    living_nft, collector, store, tmp_path, make_cid
):
    files = _files("raced", 3)
    folders = FolderPinner(store, tmp_path, files)

    def pin_while_another_mint_lands(first_token_id: int, cids: Sequence[str]) -> str:
        folder = folders(first_token_id, cids)
        living_nft.mint(collector.address, make_cid("interloper"))  # takes the id the folder was built for
        return folder

    with pytest.raises(UnexpectedFirstTokenIdError) as refused:
        living_nft.mint_drop(collector.address, list(files), pin_folder=pin_while_another_mint_lands)

    assert isinstance(refused.value, ContractRevertError)
    assert (refused.value.next_token_id, refused.value.first_token_id) == (2, 1)
    assert "another mint came in between" in str(refused.value)
    assert living_nft.total_supply() == 1  # only the interloper: nothing of the drop was minted
    with pytest.raises(UnexpectedFirstTokenIdError):
        living_nft.estimate_mint_drop(collector.address, 1, folders.calls[0][2], list(files))


def test_a_failing_later_part_reports_the_drops_already_minted(living_nft, collector, store, tmp_path):
    files = _files("partial", 10)
    pin = FolderPinner(store, tmp_path, files)
    living_nft.grant_role("MINTER_ROLE", collector.address)
    minter = LivingNFTClient(collector, living_nft.address, from_block=living_nft.from_block)

    def revoke_before_the_second_part(first: int, cids: Sequence[str]) -> str:
        if pin.calls:
            living_nft.revoke_role("MINTER_ROLE", collector.address)
        return pin(first, cids)

    guarded: Callable[[int, Sequence[str]], str] = revoke_before_the_second_part
    with pytest.raises(BatchMintError) as partial:
        minter.mint_drop(collector.address, list(files), pin_folder=guarded, gas_budget=230_000)

    (done,) = partial.value.done
    assert done.metadata_cids == pin.calls[0][1]
    assert living_nft.total_supply() == len(done.token_ids)
    assert all(living_nft.token_uri(t) == f"ipfs://{done.folder_cid}/{t}.json" for t in done.token_ids)
