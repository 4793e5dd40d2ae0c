// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IERC4906} from "@openzeppelin/contracts/interfaces/IERC4906.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {LivingNFT} from "../src/LivingNFT.sol";
import {Fixture} from "./utils/Fixture.sol";

/// @dev mintBatch: each batch-minted token behaves exactly like a singly minted one (events, owner,
/// tokenURI, history, evolution, freeze, royalties, transfers), although most of them own no slot.
contract LivingNFTBatchMintTest is Fixture {
    function mintBatchTo(address to, uint256 count) internal returns (uint256 first) {
        bytes32[] memory batch = digests(string.concat("batch-", _str(nft.totalSupply() + 1), "-"), count);
        vm.prank(minter);
        first = nft.mintBatch(to, batch);
    }

    function test_mintBatch_emitsTransferAndMetadataSetPerTokenThenOneRange() public {
        mintTo(collector); // the batch starts at id 2, inside an anchor group
        bytes32[] memory batch = digests("d", 5);
        expectMintedOneByOne(artist, 2, batch);
        vm.expectEmit(true, true, true, true);
        emit IERC4906.BatchMetadataUpdate(2, 6);
        vm.prank(minter);
        assertEq(nft.mintBatch(artist, batch), 2, "first id");
        assertEq(nft.totalSupply(), 6, "totalSupply");
        assertEq(nft.balanceOf(artist), 5, "balance");
        for (uint256 i = 0; i < 5; i++) {
            uint256 id = 2 + i;
            assertEq(nft.ownerOf(id), artist, string.concat("owner of ", _str(id)));
            assertEq(nft.metadataDigest(id), batch[i], "digest");
            assertEq(nft.tokenURI(id), referenceURI(batch[i]), "its own tokenURI");
            assertEq(nft.metadataVersion(id), 0, "version 0");
            assertFalse(nft.isFrozen(id), "not frozen");
        }
        assertEq(nft.ownerOf(1), collector, "the token before the batch keeps its owner");
        assertEq(mintTo(stranger), 7, "a later single mint follows the batch");
        assertEq(nft.ownerOf(7), stranger, "and is not read as part of the batch");
    }

    function test_mintBatch_writesOwnerSlotsOnlyForTheFirstTokenAndAnchors() public {
        mintTo(collector);
        mintBatchTo(artist, 9); // ids 2..10: slots of 2 (first), 5 and 9 (anchors)
        for (uint256 id = 2; id <= 10; id++) {
            address stored = address(uint160(uint256(vm.load(address(nft), ownerSlot(id)))));
            bool written = id == 2 || id % 4 == 1;
            assertEq(stored, written ? artist : address(0), string.concat("owner slot of ", _str(id)));
        }
    }

    function test_mintBatch_revertsEmptyZeroDigestZeroAddressAndRole() public {
        bytes32[] memory none = new bytes32[](0);
        vm.startPrank(minter);
        vm.expectRevert(LivingNFT.EmptyBatch.selector);
        nft.mintBatch(artist, none);
        bytes32[] memory withZero = digests("z", 3);
        withZero[2] = bytes32(0);
        vm.expectRevert(LivingNFT.ZeroMetadataDigest.selector);
        nft.mintBatch(artist, withZero);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidReceiver.selector, address(0)));
        nft.mintBatch(address(0), digests("a", 2));
        vm.stopPrank();
        assertEq(nft.totalSupply(), 0, "nothing minted by a refused batch");

        bytes32 role = nft.MINTER_ROLE();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role)
        );
        nft.mintBatch(stranger, digests("s", 2));
    }

    function test_mintBatch_unmintedIdsStayNonexistent() public {
        mintBatchTo(artist, 3);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 4));
        nft.ownerOf(4);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 4));
        nft.tokenURI(4);
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 4));
        nft.evolve(4, digestOf("x"), 0);
    }

    function test_transfersOfBatchTokensKeepEveryNeighbourOwner() public {
        mintBatchTo(artist, 8); // 1..8
        vm.startPrank(artist);
        nft.transferFrom(artist, collector, 3); // lazy: gives 4 its own slot first
        nft.transferFrom(artist, stranger, 1); // the batch's first: 2 gets its own slot first
        nft.safeTransferFrom(artist, collector, 7);
        vm.stopPrank();
        address[9] memory expected =
            [address(0), stranger, artist, collector, artist, artist, artist, collector, artist];
        for (uint256 id = 1; id <= 8; id++) {
            assertEq(nft.ownerOf(id), expected[id], string.concat("owner of ", _str(id)));
        }
        assertEq(nft.balanceOf(artist), 5, "artist balance");
        assertEq(nft.balanceOf(collector), 2, "collector balance");
        assertEq(nft.balanceOf(stranger), 1, "stranger balance");

        vm.prank(collector);
        nft.transferFrom(collector, artist, 3);
        assertEq(nft.ownerOf(3), artist, "back");
        assertEq(nft.ownerOf(4), artist, "4 unchanged");
    }

    function test_approvalsOfBatchTokens() public {
        mintBatchTo(artist, 4);
        vm.prank(artist);
        nft.approve(collector, 3);
        assertEq(nft.getApproved(3), collector, "approved");
        vm.prank(collector);
        nft.transferFrom(artist, stranger, 3);
        assertEq(nft.ownerOf(3), stranger, "moved by the approved account");
        assertEq(nft.getApproved(3), address(0), "approval cleared");
        vm.prank(collector);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InsufficientApproval.selector, collector, 2));
        nft.transferFrom(artist, collector, 2);
    }

    function test_evolveAndEvolveBatchOnBatchTokens() public {
        mintTo(collector);
        uint256 first = mintBatchTo(artist, 6); // 2..7
        vm.prank(evolver);
        nft.evolve(first + 1, digestOf("e1"), 0);
        assertEq(nft.metadataVersion(first + 1), 1, "evolved");
        assertEq(nft.tokenURI(first + 1), referenceURI(digestOf("e1")), "tokenURI follows");
        assertEq(nft.ownerOf(first + 1), artist, "owner kept by evolving");

        uint256[] memory ids = new uint256[](3);
        bytes32[] memory next = digests("n", 3);
        uint256[] memory expected = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (first + 1, first + 2, 1);
        (expected[0], expected[1], expected[2]) = (1, 0, 0);
        vm.prank(evolver);
        nft.evolveBatch(ids, next, expected);
        assertEq(nft.metadataVersion(first + 1), 2, "batch-minted, evolved twice");
        assertEq(nft.metadataVersion(first + 2), 1, "batch-minted, evolved once");
        assertEq(nft.metadataVersion(1), 1, "singly minted neighbour");
        assertEq(nft.metadataVersion(first + 3), 0, "untouched neighbour");

        expected[0] = 1; // stale: compare-and-set refuses the whole batch
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionMismatch.selector, first + 1, 1, 2));
        nft.evolveBatch(ids, next, expected);
    }

    function test_freezeAndRoyaltiesOnBatchTokens() public {
        uint256 first = mintBatchTo(artist, 3);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.NotOwnerOrAdmin.selector, stranger, first + 2));
        nft.freeze(first + 2);
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.PermanentURI(nft.tokenURI(first + 2), first + 2);
        vm.prank(artist); // the owner, read from below
        nft.freeze(first + 2);
        assertTrue(nft.isFrozen(first + 2), "frozen");
        assertFalse(nft.isFrozen(first + 1), "neighbour not frozen");
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.TokenFrozen.selector, first + 2));
        nft.evolve(first + 2, digestOf("x"), 0);

        (address receiver, uint256 amount) = nft.royaltyInfo(first + 1, 10_000);
        assertEq(receiver, royaltyReceiver, "default royalty receiver");
        assertEq(amount, 500, "default royalty");
        vm.prank(admin);
        nft.setTokenRoyalty(first + 1, collector, 100);
        (receiver, amount) = nft.royaltyInfo(first + 1, 10_000);
        assertEq(receiver, collector, "token royalty receiver");
        assertEq(amount, 100, "token royalty");
    }

    function testFuzz_batchesAndSinglesInterleaved(uint8[6] calldata sizes, uint8 moves) public {
        address[3] memory owners = [artist, collector, stranger];
        uint256 total;
        for (uint256 i = 0; i < sizes.length; i++) {
            uint256 n = sizes[i] % 9; // 0: a single mint
            address to = owners[i % 3];
            if (n == 0) {
                mintTo(to);
                total += 1;
            } else {
                assertEq(mintBatchTo(to, n), total + 1, "batch ids follow");
                total += n;
            }
        }
        // Move one token, chosen by `moves`, to `collector`, then check every owner against a replay.
        uint256 moved = 1 + (uint256(moves) % total);
        address from = nft.ownerOf(moved);
        vm.prank(from);
        nft.transferFrom(from, collector, moved);
        uint256 id = 1;
        uint256[3] memory balances;
        for (uint256 i = 0; i < sizes.length; i++) {
            uint256 n = sizes[i] % 9 == 0 ? 1 : sizes[i] % 9;
            for (uint256 k = 0; k < n; k++) {
                address expected = id == moved ? collector : owners[i % 3];
                assertEq(nft.ownerOf(id), expected, string.concat("owner of ", _str(id)));
                balances[id == moved ? 1 : i % 3]++;
                id++;
            }
        }
        for (uint256 i = 0; i < 3; i++) {
            assertEq(nft.balanceOf(owners[i]), balances[i], "balance");
        }
    }
}
