// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {LivingNFT} from "../src/LivingNFT.sol";
import {Fixture} from "./utils/Fixture.sol";
import {AcceptingReceiver, NotAReceiver, RevertingReceiver, WrongValueReceiver} from "./utils/Receivers.sol";

/// @dev Properties of LivingNFT checked over random inputs (256 runs each, see foundry.toml).
contract LivingNFTFuzzTest is Fixture {
    address[4] internal holders;

    function setUp() public override {
        super.setUp();
        holders = [artist, collector, stranger, makeAddr("fourth")];
    }

    // ------------------------------------------------------------------ approvals and transfers

    /// Whoever moves the token (owner, approved account or operator) and wherever it goes, its single-token
    /// approval is gone afterwards and the balances move by one.
    function testFuzz_approvalIsClearedOnTransfer(uint8 mover, address to, bool safe) public {
        vm.assume(to != address(0) && to.code.length == 0 && uint160(to) > 0x10000 && to != address(vm));
        uint256 id = mintTo(artist);
        address approved = makeAddr("approved");
        address operator = makeAddr("operator");
        vm.startPrank(artist);
        nft.approve(approved, id);
        nft.setApprovalForAll(operator, true);
        vm.stopPrank();
        address by = [artist, approved, operator][mover % 3];
        uint256 before = nft.balanceOf(to);

        vm.prank(by);
        if (safe) nft.safeTransferFrom(artist, to, id);
        else nft.transferFrom(artist, to, id);

        assertEq(nft.getApproved(id), address(0), "approval cleared");
        assertEq(nft.ownerOf(id), to, "new owner");
        if (to != artist) {
            assertEq(nft.balanceOf(artist), 0, "sender balance");
            assertEq(nft.balanceOf(to), before + 1, "receiver balance");
        } else {
            assertEq(nft.balanceOf(artist), 1, "self transfer keeps the balance");
        }
        assertTrue(nft.isApprovedForAll(artist, operator), "operator approval is not per token");
        if (by == approved) {
            // The cleared approval no longer moves it back.
            vm.prank(approved);
            vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InsufficientApproval.selector, approved, id));
            nft.transferFrom(to, artist, id);
        }
    }

    /// safeTransferFrom calls the receiving contract with the operator, the sender, the id and the data.
    function testFuzz_safeTransferFromCallsTheReceiver(bytes calldata data, bool byOperator) public {
        uint256 id = mintTo(artist);
        AcceptingReceiver receiver = new AcceptingReceiver();
        address operator = makeAddr("operator");
        vm.prank(artist);
        nft.setApprovalForAll(operator, true);
        address by = byOperator ? operator : artist;
        vm.prank(by);
        nft.safeTransferFrom(artist, address(receiver), id, data);
        assertEq(nft.ownerOf(id), address(receiver), "owner");
        assertEq(receiver.lastOperator(), by, "operator");
        assertEq(receiver.lastFrom(), artist, "from");
        assertEq(receiver.lastTokenId(), id, "id");
        assertEq(receiver.lastData(), data, "data");
        assertEq(receiver.calls(), 1, "one call");
    }

    /// A receiver that refuses (wrong value, revert, no callback) leaves everything as it was.
    function testFuzz_refusingReceiverKeepsTheToken(uint8 kind, bytes calldata data) public {
        uint256 id = mintTo(artist);
        vm.prank(artist);
        nft.approve(collector, id);
        address target;
        bytes memory expected;
        if (kind % 3 == 0) {
            target = address(new WrongValueReceiver());
            expected = abi.encodeWithSelector(IERC721Errors.ERC721InvalidReceiver.selector, target);
        } else if (kind % 3 == 1) {
            target = address(new NotAReceiver());
            expected = abi.encodeWithSelector(IERC721Errors.ERC721InvalidReceiver.selector, target);
        } else {
            target = address(new RevertingReceiver());
            expected = abi.encodeWithSignature("Error(string)", "no tokens here");
        }
        vm.prank(artist);
        vm.expectRevert(expected);
        nft.safeTransferFrom(artist, target, id, data);
        assertEq(nft.ownerOf(id), artist, "owner kept");
        assertEq(nft.getApproved(id), collector, "approval kept");
        assertEq(nft.balanceOf(artist), 1, "balance kept");
    }

    /// Over random transfers among four holders, each balance is the number of tokens it owns.
    function testFuzz_balancesMatchOwnership(uint8[24] calldata moves) public {
        uint256 count = 10;
        for (uint256 i = 0; i < count; i++) {
            mintTo(holders[i % 4]);
        }
        for (uint256 i = 0; i < moves.length; i++) {
            uint256 id = 1 + (moves[i] % count);
            address to = holders[(moves[i] >> 4) % 4];
            address from = nft.ownerOf(id);
            vm.prank(from);
            nft.transferFrom(from, to, id);
        }
        uint256 total;
        for (uint256 h = 0; h < 4; h++) {
            uint256 owned;
            for (uint256 id = 1; id <= count; id++) {
                if (nft.ownerOf(id) == holders[h]) owned++;
            }
            assertEq(nft.balanceOf(holders[h]), owned, "balance = tokens owned");
            total += owned;
        }
        assertEq(total, count, "every token has one owner");
    }

    // ------------------------------------------------------------------ versions and the packed lane

    /// From any version (set straight in storage) an evolve goes one up, until MAX_VERSION, which reverts
    /// VersionOverflow; the three other tokens of the word keep their lanes whatever they hold.
    function testFuzz_maxVersionAndNeighbours(uint256 version, uint8 position, uint256 neighbourLanes) public {
        mintMany(artist, 8);
        uint256 max = nft.MAX_VERSION();
        version = bound(version, max - 3, max);
        if (position & 128 != 0) version = bound(version, 0, max); // also versions far from the edge
        uint256 id = 5 + (position % 4); // the second version word: ids 5..8
        uint256[4] memory lanes;
        for (uint256 i = 0; i < 4; i++) {
            lanes[i] = (neighbourLanes >> (24 * i)) & 0xffffff;
            if (5 + i != id) storeLane(5 + i, lanes[i]);
        }
        storeLane(id, version);
        assertEq(nft.metadataVersion(id), version, "version read back");

        bytes32 digest = digestOf("next");
        vm.prank(evolver);
        if (version == max) {
            vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionOverflow.selector, id));
            nft.evolve(id, digest, version);
        } else {
            nft.evolve(id, digest, version);
            assertEq(nft.metadataVersion(id), version + 1, "one up");
            assertFalse(nft.isFrozen(id), "not frozen by a carry");
        }
        for (uint256 i = 0; i < 4; i++) {
            if (5 + i == id) continue;
            assertEq(nft.metadataVersion(5 + i), lanes[i] & max, "neighbour version");
            assertEq(nft.isFrozen(5 + i), lanes[i] & (1 << 23) != 0, "neighbour frozen flag");
        }
        for (uint256 t = 1; t <= 8; t++) {
            assertEq(nft.ownerOf(t), artist, "owners untouched");
        }
        assertEq(nft.metadataVersion(1), 0, "other word untouched");
    }

    /// Any expected version but the current one reverts VersionMismatch and changes nothing.
    function testFuzz_versionMismatch(uint8 evolutions, uint256 expected) public {
        uint256 id = mintTo(artist);
        evolutions = uint8(bound(evolutions, 0, 6));
        for (uint256 i = 0; i < evolutions; i++) {
            evolveOnce(id);
        }
        vm.assume(expected != evolutions);
        bytes32 before = nft.metadataDigest(id);
        bytes32 digest = digestOf("stale");
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionMismatch.selector, id, expected, evolutions));
        nft.evolve(id, digest, expected);
        assertEq(nft.metadataVersion(id), evolutions, "version unchanged");
        assertEq(nft.metadataDigest(id), before, "digest unchanged");
    }

    // ------------------------------------------------------------------ batches

    /// Arrays of unequal length revert BatchLengthMismatch (with the three lengths); equal and empty,
    /// EmptyBatch.
    function testFuzz_batchShapes(uint8 a, uint8 b, uint8 c) public {
        (uint256 ids, uint256 digests, uint256 expected) = (a % 12, b % 12, c % 12);
        if (a & 64 != 0) (digests, expected) = (ids, ids); // equal lengths often enough
        mintMany(artist, 12);
        uint256[] memory tokenIds = new uint256[](ids);
        bytes32[] memory newDigests = new bytes32[](digests);
        uint256[] memory versions = new uint256[](expected);
        for (uint256 i = 0; i < ids; i++) {
            tokenIds[i] = i + 1;
        }
        for (uint256 i = 0; i < digests; i++) {
            newDigests[i] = digestOf(_str(i));
        }
        vm.prank(evolver);
        if (ids != digests || ids != expected) {
            vm.expectRevert(abi.encodeWithSelector(LivingNFT.BatchLengthMismatch.selector, ids, digests, expected));
        } else if (ids == 0) {
            vm.expectRevert(LivingNFT.EmptyBatch.selector);
        }
        nft.evolveBatch(tokenIds, newDigests, versions);
        uint256 evolved = ids == digests && ids == expected ? 1 : 0;
        for (uint256 i = 1; i <= 12; i++) {
            assertEq(nft.metadataVersion(i), i <= ids ? evolved : 0, "versions after the batch");
        }
    }

    /// A token repeated k times in one batch evolves k times when its expected versions count up, and the
    /// last digest wins; the same expected version twice reverts VersionMismatch on the second.
    function testFuzz_duplicateIdsInABatch(uint8 repeats, uint8 start, bool stale) public {
        uint256 k = bound(repeats, 2, 9);
        uint256 id = mintTo(artist);
        mintTo(artist);
        uint256 v0 = bound(start, 0, 4);
        for (uint256 i = 0; i < v0; i++) {
            evolveOnce(id);
        }
        uint256[] memory ids = new uint256[](k + 1);
        bytes32[] memory digests = new bytes32[](k + 1);
        uint256[] memory expected = new uint256[](k + 1);
        for (uint256 i = 0; i < k; i++) {
            ids[i] = id;
            digests[i] = digestOf(string.concat("dup", _str(i)));
            expected[i] = v0 + i;
        }
        (ids[k], digests[k], expected[k]) = (id + 1, digestOf("other"), 0);
        if (stale) {
            uint256 pos = 1 + (uint256(repeats) % (k - 1));
            expected[pos] = expected[pos - 1]; // built on the same version as the one before it
            vm.prank(evolver);
            vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionMismatch.selector, id, v0 + pos - 1, v0 + pos));
            nft.evolveBatch(ids, digests, expected);
            assertEq(nft.metadataVersion(id), v0, "nothing changed");
            return;
        }
        vm.prank(evolver);
        nft.evolveBatch(ids, digests, expected);
        assertEq(nft.metadataVersion(id), v0 + k, "evolved once per occurrence");
        assertEq(nft.metadataDigest(id), digests[k - 1], "the last digest wins");
        assertEq(nft.metadataVersion(id + 1), 1, "the other token once");
    }

    // ------------------------------------------------------------------ access

    /// Approval (of the token or of all the owner's tokens) lets an account move a token, never freeze it:
    /// only the owner or an admin may.
    function testFuzz_approvedOperatorCannotFreeze(bool forAll, address operator) public {
        vm.assume(operator != address(0) && operator != artist && operator != admin);
        uint256 id = mintTo(artist);
        vm.prank(artist);
        if (forAll) nft.setApprovalForAll(operator, true);
        else nft.approve(operator, id);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.NotOwnerOrAdmin.selector, operator, id));
        nft.freeze(id);
        assertFalse(nft.isFrozen(id), "not frozen");
        // Once it owns the token, it may.
        vm.prank(operator);
        nft.transferFrom(artist, operator, id);
        vm.prank(operator);
        nft.freeze(id);
        assertTrue(nft.isFrozen(id), "frozen by its new owner");
    }

    /// refreshAll succeeds exactly for admins and evolvers.
    function testFuzz_refreshAllAccess(address caller, uint8 role) public {
        vm.assume(caller != admin && caller != evolver);
        bytes32 granted = [bytes32(0), nft.EVOLVER_ROLE(), nft.MINTER_ROLE(), bytes32(uint256(1))][role % 4];
        if (role % 4 != 3) {
            vm.prank(admin);
            nft.grantRole(granted, caller);
        }
        bool allowed = role % 4 < 2;
        vm.prank(caller);
        if (!allowed) vm.expectRevert(abi.encodeWithSelector(LivingNFT.NotAdminOrEvolver.selector, caller));
        nft.refreshAll();
    }

    /// Only MINTER_ROLE mints and only EVOLVER_ROLE evolves, whoever else calls.
    function testFuzz_rolesGateMintAndEvolve(address caller) public {
        vm.assume(caller != minter && caller != evolver);
        uint256 id = mintTo(artist);
        bytes32 minterRole = nft.MINTER_ROLE();
        bytes32 evolverRole = nft.EVOLVER_ROLE();
        bytes32 digest = digestOf("x");
        vm.prank(caller);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, caller, minterRole)
        );
        nft.mint(caller, digest);
        vm.prank(caller);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, caller, evolverRole)
        );
        nft.evolve(id, digest, 0);
    }

    /// tokenURI is ipfs:// + the base32 CIDv1 (raw, sha2-256) of whatever digest is stored.
    function testFuzz_tokenURIMatchesTheReferenceEncoder(bytes32 digest) public {
        vm.assume(digest != bytes32(0));
        vm.prank(minter);
        uint256 id = nft.mint(artist, digest);
        assertEq(nft.tokenURI(id), referenceURI(digest), "tokenURI");
        assertEq(nft.metadataDigest(id), digest, "digest");
    }
}
