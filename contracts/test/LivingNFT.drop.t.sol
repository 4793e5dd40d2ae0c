// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IERC4906} from "@openzeppelin/contracts/interfaces/IERC4906.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {LivingNFT} from "../src/LivingNFT.sol";
import {Fixture} from "./utils/Fixture.sol";

/// @dev mintDrop: a drop's tokens store no digest and read `<id>.json` in the drop's folder until their first
/// evolution, yet a marketplace reads each like a singly minted token (Transfer, MetadataSet history,
/// tokenURI of its own file, owner, evolution, freeze, royalties).
contract LivingNFTDropTest is Fixture {
    bytes32 internal constant FOLDER = keccak256("folder");

    /// kubo's CIDs of the reference folder `dir3` (../shared/reference/ipfs-cids.json: `ipfs add -r
    /// --cid-version=1` of 1.json, 2.json and cover.png) and of its two JSON files: the digests below are
    /// these CIDs' last 32 bytes, and the contract must render the very same strings.
    string internal constant KUBO_DIR3 = "bafybeih7vvdheh26ixtcbjv6h2x5phtuebevdpi24o3ucyl3srghthp4iq";
    bytes32 internal constant KUBO_DIR3_DIGEST = 0xffad46721f5e45e620a6be3eafd79e74204951bd1ae3b741617b944c799dfc44;
    string internal constant KUBO_1_JSON = "bafkreiaemm7zgq34aqab2qnjvmogblw6qn5qsait4zpkke6wbvwobp2kpm";
    bytes32 internal constant KUBO_1_JSON_DIGEST = 0x04633f93437c04001d41a9ab1c60aede837b090113e65ea513d60d6ce0bf4a7b;
    string internal constant KUBO_2_JSON = "bafkreihw77qlcjhjzgqj3okmm7nr4e27rx37ta5a26cfv6pwmviky77fue";
    bytes32 internal constant KUBO_2_JSON_DIGEST = 0xf6ffe0b124e9c9a09db94c67db1e135f8df7f983a0d7845af9f66550ac7fe5a1;
    /// kubo's CID of `dir2k` (2000 files `<i>.json`, an unsharded folder).
    string internal constant KUBO_DIR2K = "bafybeigu3tebbvgyxurrsykyqlfa33tzeklzenzub2cy4xz3jwkgaqzwqm";
    bytes32 internal constant KUBO_DIR2K_DIGEST = 0xd4dcc810d4d8bd2319615882ca0dee7922979237340e858e5f3b4d9460433683;

    function test_mintDrop_emitsTransferMetadataSetPerTokenThenDropAndOneRange() public {
        mintTo(collector); // the drop starts at id 2, inside an anchor group
        bytes32[] memory files = digests("f", 5);
        expectMintedOneByOne(artist, 2, files);
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.DropMinted(2, 6, FOLDER);
        vm.expectEmit(true, true, true, true);
        emit IERC4906.BatchMetadataUpdate(2, 6);
        vm.prank(minter);
        nft.mintDrop(artist, 2, FOLDER, files);

        assertEq(nft.totalSupply(), 6, "totalSupply");
        assertEq(nft.balanceOf(artist), 5, "balance");
        for (uint256 id = 2; id <= 6; id++) {
            assertEq(nft.ownerOf(id), artist, string.concat("owner of ", _str(id)));
            assertEq(nft.metadataDigest(id), bytes32(0), "no digest of its own before its first evolution");
            assertEq(nft.tokenURI(id), referenceFolderURI(FOLDER, id), "its file in the drop's folder");
            assertEq(nft.metadataVersion(id), 0, "version 0");
            assertFalse(nft.isFrozen(id), "not frozen");
            (uint256 first, uint256 last, bytes32 folder) = nft.dropOf(id);
            assertEq(first, 2, "drop's first id");
            assertEq(last, 6, "drop's last id");
            assertEq(folder, FOLDER, "drop's folder");
        }
        assertEq(nft.ownerOf(1), collector, "the token before the drop keeps its owner");
        assertEq(nft.balanceOf(collector), 1, "and its balance");
        _assertNoDrop(1);

        // A single mint right after the drop is its own token, not read as part of the drop.
        assertEq(mintTo(stranger), 7, "a later single mint follows the drop");
        assertEq(nft.ownerOf(7), stranger, "its owner");
        assertEq(nft.balanceOf(stranger), 1, "its owner's balance");
        assertEq(nft.balanceOf(artist), 5, "the drop's owner's balance is unchanged");
        assertEq(nft.tokenURI(7), referenceURI(digestOf("mint-7")), "its own bafkrei URI");
        _assertNoDrop(7);
    }

    function test_mintDrop_tokenURIIsKubosFolderCIDAndFileName() public {
        bytes32[] memory files = new bytes32[](2);
        (files[0], files[1]) = (KUBO_1_JSON_DIGEST, KUBO_2_JSON_DIGEST);
        vm.prank(minter);
        nft.mintDrop(artist, 1, KUBO_DIR3_DIGEST, files);
        assertEq(nft.tokenURI(1), string.concat("ipfs://", KUBO_DIR3, "/1.json"), "token 1: kubo's folder CID");
        assertEq(nft.tokenURI(2), string.concat("ipfs://", KUBO_DIR3, "/2.json"), "token 2: kubo's folder CID");

        // The first evolution to the very file the folder holds switches to the file's own CID.
        vm.prank(evolver);
        nft.evolve(1, KUBO_1_JSON_DIGEST, 0);
        assertEq(nft.tokenURI(1), string.concat("ipfs://", KUBO_1_JSON), "token 1: kubo's file CID");
        assertEq(nft.tokenURI(2), string.concat("ipfs://", KUBO_DIR3, "/2.json"), "token 2 still in the folder");
        vm.prank(evolver);
        nft.evolve(2, KUBO_2_JSON_DIGEST, 0);
        assertEq(nft.tokenURI(2), string.concat("ipfs://", KUBO_2_JSON), "token 2: kubo's file CID");

        // Multi-digit ids: a second drop with another kubo folder.
        (uint256 first,) = mintDropTo(artist, 11, KUBO_DIR2K_DIGEST, "k"); // ids 3..13
        assertEq(first, 3, "second drop's first id");
        assertEq(nft.tokenURI(9), string.concat("ipfs://", KUBO_DIR2K, "/9.json"), "one digit");
        assertEq(nft.tokenURI(10), string.concat("ipfs://", KUBO_DIR2K, "/10.json"), "two digits");
        assertEq(nft.tokenURI(13), string.concat("ipfs://", KUBO_DIR2K, "/13.json"), "the drop's last");
    }

    function test_mintDrop_writesOwnerSlotsOnlyForTheFirstTokenAndAnchors() public {
        mintTo(collector);
        mintDropTo(artist, 9, FOLDER, "s"); // ids 2..10: slots of 2 (first), 5 and 9 (anchors)
        for (uint256 id = 2; id <= 10; id++) {
            address stored = address(uint160(uint256(vm.load(address(nft), ownerSlot(id)))));
            bool written = id == 2 || id % 4 == 1;
            assertEq(stored, written ? artist : address(0), string.concat("owner slot of ", _str(id)));
        }
    }

    function test_mintDrop_revertsEmptyZeroDigestsStaleFirstIdZeroAddressAndRole() public {
        bytes32[] memory files = new bytes32[](3);
        for (uint256 i = 0; i < 3; i++) {
            files[i] = digestOf(string.concat("r", _str(i)));
        }
        vm.startPrank(minter);
        vm.expectRevert(LivingNFT.EmptyBatch.selector);
        nft.mintDrop(artist, 1, FOLDER, new bytes32[](0));
        vm.expectRevert(LivingNFT.ZeroMetadataDigest.selector);
        nft.mintDrop(artist, 1, bytes32(0), files);
        files[1] = bytes32(0);
        vm.expectRevert(LivingNFT.ZeroMetadataDigest.selector);
        nft.mintDrop(artist, 1, FOLDER, files);
        files[1] = digestOf("r1");
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidReceiver.selector, address(0)));
        nft.mintDrop(address(0), 1, FOLDER, files);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.UnexpectedFirstTokenId.selector, 1, 0));
        nft.mintDrop(artist, 0, FOLDER, files);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.UnexpectedFirstTokenId.selector, 1, 2));
        nft.mintDrop(artist, 2, FOLDER, files);
        vm.stopPrank();
        assertEq(nft.totalSupply(), 0, "nothing minted by a refused drop");

        mintTo(collector); // another mint takes id 1: a folder built for ids from 1 is refused
        vm.prank(minter);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.UnexpectedFirstTokenId.selector, 2, 1));
        nft.mintDrop(artist, 1, FOLDER, files);
        assertEq(nft.totalSupply(), 1, "still nothing minted by the drop");

        bytes32 role = nft.MINTER_ROLE();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role)
        );
        nft.mintDrop(stranger, 2, FOLDER, files);
    }

    function test_unmintedIdsAroundADropStayNonexistent() public {
        mintDropTo(artist, 3, FOLDER, "u"); // 1..3
        uint256[2] memory unknown = [uint256(0), 4];
        for (uint256 i = 0; i < unknown.length; i++) {
            uint256 id = unknown[i];
            bytes memory err = abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, id);
            vm.expectRevert(err);
            nft.ownerOf(id);
            vm.expectRevert(err);
            nft.tokenURI(id);
            vm.expectRevert(err);
            nft.metadataDigest(id);
            vm.expectRevert(err);
            nft.metadataVersion(id);
            vm.expectRevert(err);
            nft.isFrozen(id);
            vm.expectRevert(err);
            nft.dropOf(id);
            vm.expectRevert(err);
            nft.freeze(id);
            vm.prank(evolver);
            vm.expectRevert(err);
            nft.evolve(id, digestOf("x"), 0);
        }
    }

    function test_transfersInsideADropKeepEveryNeighbourOwner() public {
        mintDropTo(artist, 8, FOLDER, "t"); // 1..8
        vm.startPrank(artist);
        nft.transferFrom(artist, collector, 3); // lazy: gives 4 its own slot first
        nft.transferFrom(artist, stranger, 1); // the drop's first: 2 gets its own slot first
        nft.safeTransferFrom(artist, collector, 7);
        nft.transferFrom(artist, stranger, 8); // the last: no next token to hand a slot to
        vm.stopPrank();
        address[9] memory expected =
            [address(0), stranger, artist, collector, artist, artist, artist, collector, stranger];
        for (uint256 id = 1; id <= 8; id++) {
            assertEq(nft.ownerOf(id), expected[id], string.concat("owner of ", _str(id)));
            assertEq(nft.tokenURI(id), referenceFolderURI(FOLDER, id), "a transfer leaves the URI alone");
        }
        assertEq(nft.balanceOf(artist), 4, "artist balance");
        assertEq(nft.balanceOf(collector), 2, "collector balance");
        assertEq(nft.balanceOf(stranger), 2, "stranger balance");

        vm.prank(artist);
        nft.approve(collector, 6);
        vm.prank(collector);
        nft.transferFrom(artist, collector, 6);
        assertEq(nft.ownerOf(6), collector, "moved by the approved account");
        assertEq(nft.getApproved(6), address(0), "approval cleared");
        assertEq(nft.ownerOf(5), artist, "5 unchanged");
    }

    function test_firstEvolutionSwitchesToTheTokensOwnDigest() public {
        mintTo(collector);
        (uint256 first, bytes32[] memory files) = mintDropTo(artist, 6, FOLDER, "e"); // 2..7
        uint256 id = first + 2;

        // Compare-and-set holds on a never-evolved drop token too.
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionMismatch.selector, id, 1, 0));
        nft.evolve(id, digestOf("e1"), 1);
        vm.prank(evolver);
        vm.expectRevert(LivingNFT.ZeroMetadataDigest.selector);
        nft.evolve(id, bytes32(0), 0);

        vm.expectEmit(true, true, true, true);
        emit LivingNFT.MetadataSet(id, 1, digestOf("e1"));
        vm.expectEmit(true, true, true, true);
        emit IERC4906.MetadataUpdate(id);
        vm.prank(evolver);
        nft.evolve(id, digestOf("e1"), 0);
        assertEq(nft.metadataVersion(id), 1, "evolved");
        assertEq(nft.metadataDigest(id), digestOf("e1"), "its own digest from now on");
        assertEq(nft.tokenURI(id), referenceURI(digestOf("e1")), "its own bafkrei URI from now on");
        assertEq(nft.ownerOf(id), artist, "owner kept by evolving");
        (uint256 dropFirst, uint256 dropLast, bytes32 folder) = nft.dropOf(id);
        assertEq(dropFirst, first, "still minted in its drop");
        assertEq(dropLast, first + 5, "still minted in its drop (last)");
        assertEq(folder, FOLDER, "still minted in its drop (folder)");
        for (uint256 other = first; other <= first + 5; other++) {
            if (other == id) continue;
            assertEq(nft.tokenURI(other), referenceFolderURI(FOLDER, other), "neighbours stay in the folder");
            assertEq(nft.metadataVersion(other), 0, "neighbours stay at version 0");
        }

        // A batch mixing evolved and never-evolved drop tokens and a single mint.
        uint256[] memory ids = new uint256[](3);
        bytes32[] memory next = new bytes32[](3);
        uint256[] memory expected = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (id, first + 3, 1);
        (next[0], next[1], next[2]) = (digestOf("n0"), digestOf("n1"), digestOf("n2"));
        (expected[0], expected[1], expected[2]) = (1, 0, 0);
        vm.prank(evolver);
        nft.evolveBatch(ids, next, expected);
        assertEq(nft.metadataVersion(id), 2, "evolved twice");
        assertEq(nft.tokenURI(id), referenceURI(digestOf("n0")), "second digest");
        assertEq(nft.tokenURI(first + 3), referenceURI(digestOf("n1")), "first evolution in a batch");
        assertEq(nft.tokenURI(1), referenceURI(digestOf("n2")), "the single mint");
        assertEq(nft.tokenURI(first + 4), referenceFolderURI(FOLDER, first + 4), "untouched");

        expected[1] = 0; // stale: compare-and-set refuses the whole batch
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionMismatch.selector, id, 1, 2));
        nft.evolveBatch(ids, next, expected);
        assertEq(files.length, 6, "six files");
    }

    function test_freezeOfANeverEvolvedDropTokenFixesItsFolderURI() public {
        (uint256 first,) = mintDropTo(artist, 3, FOLDER, "z");
        uint256 id = first + 2;
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.NotOwnerOrAdmin.selector, stranger, id));
        nft.freeze(id);
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.PermanentURI(referenceFolderURI(FOLDER, id), id);
        vm.prank(artist); // the owner, read from below
        nft.freeze(id);
        assertTrue(nft.isFrozen(id), "frozen");
        assertFalse(nft.isFrozen(first + 1), "neighbour not frozen");
        assertEq(nft.tokenURI(id), referenceFolderURI(FOLDER, id), "frozen in its folder for ever");
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.TokenFrozen.selector, id));
        nft.evolve(id, digestOf("x"), 0);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.TokenFrozen.selector, id));
        nft.freeze(id);

        // An evolved drop token freezes with its own URI.
        vm.prank(evolver);
        nft.evolve(first, digestOf("own"), 0);
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.PermanentURI(referenceURI(digestOf("own")), first);
        vm.prank(admin);
        nft.freeze(first);
    }

    function test_royaltiesOfDropTokens() public {
        (uint256 first,) = mintDropTo(artist, 3, FOLDER, "y");
        (address receiver, uint256 amount) = nft.royaltyInfo(first + 1, 10_000);
        assertEq(receiver, royaltyReceiver, "default royalty receiver");
        assertEq(amount, 500, "default royalty");
        vm.prank(admin);
        nft.setTokenRoyalty(first + 1, collector, 100);
        (receiver, amount) = nft.royaltyInfo(first + 1, 10_000);
        assertEq(receiver, collector, "token royalty receiver");
        assertEq(amount, 100, "token royalty");
        (receiver, amount) = nft.royaltyInfo(first + 2, 10_000);
        assertEq(receiver, royaltyReceiver, "neighbour keeps the default");
    }

    /// Drops, batches and single mints in any order: every token finds its own drop (binary search) or its
    /// own digest, and its owner, through any number of drops.
    function testFuzz_dropsBatchesAndSinglesInterleaved(uint8[8] calldata sizes, uint8 evolved, uint8 moved) public {
        address[3] memory owners = [artist, collector, stranger];
        uint256 total;
        uint256[] memory dropOfToken = new uint256[](8 * 8 + 1); // 1-based index of the drop, 0: none
        bytes32[] memory ownDigest = new bytes32[](8 * 8 + 1);
        for (uint256 i = 0; i < sizes.length; i++) {
            uint256 n = 1 + (sizes[i] % 8);
            uint256 kind = (sizes[i] >> 3) % 3; // 0: single mint, 1: mintBatch, 2: mintDrop
            address to = owners[i % 3];
            if (kind == 0) {
                uint256 single = mintTo(to);
                ownDigest[single] = digestOf(string.concat("mint-", _str(single)));
                total += 1;
            } else if (kind == 1) {
                bytes32[] memory batch = new bytes32[](n);
                for (uint256 k = 0; k < n; k++) {
                    batch[k] = digestOf(string.concat("b", _str(i), "-", _str(k)));
                    ownDigest[total + 1 + k] = batch[k];
                }
                vm.prank(minter);
                assertEq(nft.mintBatch(to, batch), total + 1, "batch ids follow");
                total += n;
            } else {
                (uint256 first,) = mintDropTo(to, n, keccak256(abi.encode("folder", i)), "d");
                assertEq(first, total + 1, "drop ids follow");
                for (uint256 k = 0; k < n; k++) {
                    dropOfToken[first + k] = i + 1;
                }
                total += n;
            }
        }
        uint256 evolvedId = 1 + (uint256(evolved) % total);
        vm.prank(evolver);
        nft.evolve(evolvedId, digestOf("evolved"), 0);
        ownDigest[evolvedId] = digestOf("evolved");
        uint256 movedId = 1 + (uint256(moved) % total);
        address from = nft.ownerOf(movedId);
        vm.prank(from);
        nft.transferFrom(from, collector, movedId);

        uint256 id = 1;
        uint256[3] memory balances;
        for (uint256 i = 0; i < sizes.length; i++) {
            uint256 n = (sizes[i] >> 3) % 3 == 0 ? 1 : 1 + (sizes[i] % 8);
            for (uint256 k = 0; k < n; k++) {
                address owner = id == movedId ? collector : owners[i % 3];
                assertEq(nft.ownerOf(id), owner, string.concat("owner of ", _str(id)));
                balances[id == movedId ? 1 : i % 3]++;
                bytes32 folder = keccak256(abi.encode("folder", dropOfToken[id] - (dropOfToken[id] == 0 ? 0 : 1)));
                string memory uri =
                    ownDigest[id] != bytes32(0) ? referenceURI(ownDigest[id]) : referenceFolderURI(folder, id);
                assertEq(nft.tokenURI(id), uri, string.concat("tokenURI of ", _str(id)));
                assertEq(nft.metadataDigest(id), ownDigest[id], string.concat("digest of ", _str(id)));
                (uint256 first, uint256 last, bytes32 dropFolder) = nft.dropOf(id);
                if (dropOfToken[id] == 0) {
                    assertEq(first, 0, "not from a drop");
                    assertEq(dropFolder, bytes32(0), "no folder");
                } else {
                    assertTrue(first <= id && id <= last && last - first + 1 == n, "its own drop's range");
                    assertEq(dropFolder, folder, "its own drop's folder");
                }
                id++;
            }
        }
        for (uint256 i = 0; i < 3; i++) {
            assertEq(nft.balanceOf(owners[i]), balances[i], "balance");
        }
    }

    function _assertNoDrop(uint256 id) internal view {
        (uint256 first, uint256 last, bytes32 folder) = nft.dropOf(id);
        assertEq(first, 0, "no drop: first");
        assertEq(last, 0, "no drop: last");
        assertEq(folder, bytes32(0), "no drop: folder");
    }
}
