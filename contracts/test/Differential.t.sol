// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {Fixture} from "./utils/Fixture.sol";
import {Vm} from "./utils/Test.sol";
import {OZToken} from "./utils/OZToken.sol";
import {
    AcceptingReceiver,
    NotAReceiver,
    RevertingReceiver,
    SilentRevertReceiver,
    WrongValueReceiver
} from "./utils/Receivers.sol";

/// @dev PackedERC721 (LivingNFT) against OpenZeppelin's ERC721 5.7.0 on the same random sequences of mints,
/// batch mints (LivingNFT's mintBatch and mintDrop against one OZ `_mint` per token: their lazily owned tokens must
/// look the same),
/// transfers (plain and safe, to accounts and to receiver contracts that accept or refuse), approvals,
/// operator approvals and reads (of unknown ids and the zero address too). Every step must give both the
/// same success or the same revert data, the same ERC-721 events, and afterwards the same owners,
/// approvals and balances.
contract DifferentialTest is Fixture {
    OZToken internal oz;
    address[9] internal parties; // who calls and who receives: accounts, receiver contracts, address(0)
    uint256 internal minted;

    bytes32 internal constant TRANSFER = keccak256("Transfer(address,address,uint256)");
    bytes32 internal constant APPROVAL = keccak256("Approval(address,address,uint256)");
    bytes32 internal constant APPROVAL_FOR_ALL = keccak256("ApprovalForAll(address,address,bool)");

    function setUp() public override {
        super.setUp();
        oz = new OZToken();
        parties = [
            artist,
            collector,
            stranger,
            address(new AcceptingReceiver()),
            address(new WrongValueReceiver()),
            address(new RevertingReceiver()),
            address(new SilentRevertReceiver()),
            address(new NotAReceiver()),
            address(0) // only ever a receiver, operator or owner asked about, never a caller
        ];
    }

    function testFuzz_sameAsOpenZeppelinERC721(uint256[40] calldata ops) public {
        for (uint256 i = 0; i < ops.length; i++) {
            _step(ops[i]);
        }
        _sameState();
    }

    function _step(uint256 op) internal {
        uint256 kind = op % 8;
        address by = parties[(op >> 8) % 8]; // never address(0) as a caller
        address to = parties[(op >> 16) % 9];
        uint256 id = 1 + ((op >> 24) % (minted + 2)); // sometimes an id that does not exist (yet)
        // `from` is mostly the real owner, sometimes another party (ERC721IncorrectOwner).
        address from = (op >> 32) % 4 == 0 ? parties[(op >> 40) % 9] : _ownerOrZero(id);
        bytes memory data = abi.encodePacked(uint64(op >> 64));
        if ((op >> 56) % 2 == 0 && id <= minted) by = oz.ownerOf(id); // often the owner

        if (kind == 0) {
            if (minted >= 24) return;
            bytes32 digest = keccak256(abi.encode(op));
            (bool okA, bytes memory retA, Vm.Log[] memory logsA) =
                _run(address(nft), minter, abi.encodeCall(nft.mint, (to, digest)));
            (bool okB, bytes memory retB, Vm.Log[] memory logsB) =
                _run(address(oz), minter, abi.encodeCall(oz.mint, (to, minted + 1)));
            assertEq(okA, okB, "mint: same outcome");
            if (okA) {
                assertEq(abi.decode(retA, (uint256)), minted + 1, "mint: sequential id");
                minted++;
            } else {
                assertEq(retA, retB, "mint: same revert");
            }
            _sameEvents(logsA, logsB, "mint");
            return;
        }
        if (kind == 7) return _batchStep(op, to);
        bytes memory call;
        if (kind == 1) {
            call = abi.encodeWithSignature("transferFrom(address,address,uint256)", from, to, id);
        } else if (kind == 2) {
            call = abi.encodeWithSignature("safeTransferFrom(address,address,uint256,bytes)", from, to, id, data);
        } else if (kind == 3) {
            call = abi.encodeWithSignature("safeTransferFrom(address,address,uint256)", from, to, id);
        } else if (kind == 4) {
            call = abi.encodeCall(IERC721.approve, (to, id));
        } else if (kind == 5) {
            call = abi.encodeCall(IERC721.setApprovalForAll, (to, (op >> 48) & 1 == 1));
        } else {
            uint256 which = (op >> 48) % 4;
            if (which == 0) call = abi.encodeCall(IERC721.ownerOf, (id));
            else if (which == 1) call = abi.encodeCall(IERC721.getApproved, (id));
            else if (which == 2) call = abi.encodeCall(IERC721.balanceOf, (to));
            else call = abi.encodeCall(IERC721.isApprovedForAll, (by, to));
        }
        _same(by, call);
    }

    function _batchStep(uint256 op, address to) internal {
        if (minted >= 24) return;
        uint256 count = 1 + ((op >> 48) % 6);
        bool drop = (op >> 60) & 1 == 1;
        (bool okA, bytes memory retA, Vm.Log[] memory logsA) =
            _run(address(nft), minter, _batchCall(op, to, count, drop));
        (bool okB, bytes memory retB, Vm.Log[] memory logsB) =
            _run(address(oz), minter, abi.encodeCall(oz.mintMany, (to, minted + 1, count)));
        assertEq(okA, okB, "mintBatch: same outcome");
        if (okA) {
            if (!drop) assertEq(abi.decode(retA, (uint256)), minted + 1, "mintBatch: first id");
            minted += count;
        } else {
            assertEq(retA, retB, "mintBatch: same revert");
        }
        _sameEvents(logsA, logsB, "mintBatch");
    }

    /// mintBatch, or mintDrop (no digests stored, one folder) of the same tokens.
    function _batchCall(uint256 op, address to, uint256 count, bool drop) internal view returns (bytes memory) {
        bytes32[] memory digests = new bytes32[](count);
        for (uint256 i = 0; i < count; i++) {
            digests[i] = keccak256(abi.encode(op, i));
        }
        if (!drop) return abi.encodeCall(nft.mintBatch, (to, digests));
        return abi.encodeCall(nft.mintDrop, (to, minted + 1, keccak256(abi.encode(op, "folder")), digests));
    }

    function _same(address by, bytes memory call) internal {
        (bool okA, bytes memory retA, Vm.Log[] memory logsA) = _run(address(nft), by, call);
        (bool okB, bytes memory retB, Vm.Log[] memory logsB) = _run(address(oz), by, call);
        assertEq(okA, okB, "same outcome");
        assertEq(retA, retB, "same return or revert data");
        _sameEvents(logsA, logsB, "call");
    }

    function _run(address target, address by, bytes memory call)
        internal
        returns (bool ok, bytes memory ret, Vm.Log[] memory logs)
    {
        vm.recordLogs();
        vm.prank(by);
        (ok, ret) = target.call(call);
        logs = _erc721Logs(vm.getRecordedLogs(), target);
    }

    /// The token's ERC-721 events (LivingNFT also emits MetadataSet and ERC-4906 events, which OZ has not).
    function _erc721Logs(Vm.Log[] memory all, address emitter) internal pure returns (Vm.Log[] memory kept) {
        uint256 n;
        for (uint256 i = 0; i < all.length; i++) {
            if (_isErc721(all[i], emitter)) n++;
        }
        kept = new Vm.Log[](n);
        n = 0;
        for (uint256 i = 0; i < all.length; i++) {
            if (_isErc721(all[i], emitter)) kept[n++] = all[i];
        }
    }

    function _isErc721(Vm.Log memory log, address emitter) internal pure returns (bool) {
        if (log.emitter != emitter || log.topics.length == 0) return false;
        bytes32 t = log.topics[0];
        return t == TRANSFER || t == APPROVAL || t == APPROVAL_FOR_ALL;
    }

    function _sameEvents(Vm.Log[] memory a, Vm.Log[] memory b, string memory what) internal pure {
        assertEq(a.length, b.length, string.concat(what, ": same number of ERC-721 events"));
        for (uint256 i = 0; i < a.length; i++) {
            assertEq(abi.encode(a[i].topics), abi.encode(b[i].topics), string.concat(what, ": same topics"));
            assertEq(a[i].data, b[i].data, string.concat(what, ": same event data"));
        }
    }

    function _ownerOrZero(uint256 id) internal view returns (address) {
        return id <= minted ? oz.ownerOf(id) : address(0);
    }

    function _sameState() internal view {
        for (uint256 id = 1; id <= minted; id++) {
            assertEq(nft.ownerOf(id), oz.ownerOf(id), "same owner");
            assertEq(nft.getApproved(id), oz.getApproved(id), "same approval");
        }
        for (uint256 i = 0; i < 8; i++) {
            assertEq(nft.balanceOf(parties[i]), oz.balanceOf(parties[i]), "same balance");
            for (uint256 j = 0; j < 9; j++) {
                assertEq(
                    nft.isApprovedForAll(parties[i], parties[j]),
                    oz.isApprovedForAll(parties[i], parties[j]),
                    "same operator approval"
                );
            }
        }
    }
}
