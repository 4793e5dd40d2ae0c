// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IERC4906} from "@openzeppelin/contracts/interfaces/IERC4906.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {ERC2981} from "@openzeppelin/contracts/token/common/ERC2981.sol";
import {LivingNFT} from "../src/LivingNFT.sol";
import {Fixture} from "./utils/Fixture.sol";
import {
    AcceptingReceiver,
    NotAReceiver,
    RevertingReceiver,
    SilentRevertReceiver,
    WrongValueReceiver
} from "./utils/Receivers.sol";

/// @dev One test (or more) per external function and per custom error of LivingNFT and PackedERC721.
contract LivingNFTUnitTest is Fixture {
    bytes32 internal constant DEFAULT_ADMIN_ROLE = 0x00;

    // ------------------------------------------------------------------ construction and views

    function test_constructor_setsNameSymbolRolesRoyaltyAndContractURI() public {
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.DefaultRoyaltySet(royaltyReceiver, 250);
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.ContractURIUpdated();
        LivingNFT fresh = new LivingNFT("Name", "SYM", admin, royaltyReceiver, 250, "ipfs://c");
        assertEq(fresh.name(), "Name", "name");
        assertEq(fresh.symbol(), "SYM", "symbol");
        assertTrue(fresh.hasRole(DEFAULT_ADMIN_ROLE, admin), "admin role");
        assertFalse(fresh.hasRole(fresh.MINTER_ROLE(), admin), "admin is not a minter until it grants itself");
        assertEq(fresh.contractURI(), "ipfs://c", "contractURI");
        assertEq(fresh.totalSupply(), 0, "totalSupply");
        (address receiver, uint256 amount) = fresh.royaltyInfo(1, 10_000);
        assertEq(receiver, royaltyReceiver, "royalty receiver");
        assertEq(amount, 250, "royalty amount");
    }

    function test_constants() public view {
        assertEq(nft.MINTER_ROLE(), keccak256("MINTER_ROLE"), "MINTER_ROLE");
        assertEq(nft.EVOLVER_ROLE(), keccak256("EVOLVER_ROLE"), "EVOLVER_ROLE");
        assertEq(nft.MAX_VERSION(), (1 << 23) - 1, "MAX_VERSION");
        assertEq(nft.DEFAULT_ADMIN_ROLE(), DEFAULT_ADMIN_ROLE, "DEFAULT_ADMIN_ROLE");
        assertEq(nft.getRoleAdmin(nft.MINTER_ROLE()), DEFAULT_ADMIN_ROLE, "role admin");
    }

    function test_supportsInterface() public view {
        bytes4[6] memory supported = [
            bytes4(0x01ffc9a7), // ERC-165
            0x80ac58cd, // ERC-721
            0x5b5e139f, // ERC-721 metadata
            0x2a55205a, // ERC-2981
            0x49064906, // ERC-4906
            0x7965db0b // AccessControl
        ];
        for (uint256 i = 0; i < supported.length; i++) {
            assertTrue(nft.supportsInterface(supported[i]), "supported");
        }
        assertFalse(nft.supportsInterface(0xffffffff), "0xffffffff");
        assertFalse(nft.supportsInterface(0x780e9d63), "ERC721Enumerable is not implemented");
    }

    function test_storageLayout_ownerSlotIsWhereTheTestsLook() public {
        uint256 id = mintTo(artist);
        assertEq(address(uint160(uint256(vm.load(address(nft), ownerSlot(id))))), artist, "owner in the packed slot");
    }

    // ------------------------------------------------------------------ mint

    function test_mint_assignsSequentialIdsAndEmits() public {
        bytes32 digest = digestOf("first");
        vm.expectEmit(true, true, true, true);
        emit IERC721.Transfer(address(0), artist, 1);
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.MetadataSet(1, 0, digest);
        vm.expectEmit(true, true, true, true);
        emit IERC4906.MetadataUpdate(1);
        vm.prank(minter);
        assertEq(nft.mint(artist, digest), 1, "first id");
        assertEq(mintTo(collector), 2, "second id");
        assertEq(nft.totalSupply(), 2, "totalSupply");
        assertEq(nft.ownerOf(1), artist, "owner 1");
        assertEq(nft.balanceOf(artist), 1, "balance");
        assertEq(nft.metadataDigest(1), digest, "digest");
        assertEq(nft.metadataVersion(1), 0, "version 0");
        assertFalse(nft.isFrozen(1), "not frozen");
    }

    function test_mint_toAContractWithoutCallback() public {
        NotAReceiver box = new NotAReceiver();
        uint256 id = mintTo(address(box)); // plain _mint: no receiver callback
        assertEq(nft.ownerOf(id), address(box), "owner");
    }

    function test_mint_revertsZeroMetadataDigest() public {
        vm.prank(minter);
        vm.expectRevert(LivingNFT.ZeroMetadataDigest.selector);
        nft.mint(artist, bytes32(0));
    }

    function test_mint_revertsToZeroAddress() public {
        vm.prank(minter);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidReceiver.selector, address(0)));
        nft.mint(address(0), digestOf("x"));
    }

    function test_mint_revertsWithoutMinterRole() public {
        bytes32 role = nft.MINTER_ROLE();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role)
        );
        nft.mint(stranger, digestOf("x"));
    }

    // ------------------------------------------------------------------ evolve

    function test_evolve_bumpsVersionSetsDigestAndEmits() public {
        uint256 id = mintTo(artist);
        bytes32 digest = digestOf("v1");
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.MetadataSet(id, 1, digest);
        vm.expectEmit(true, true, true, true);
        emit IERC4906.MetadataUpdate(id);
        vm.prank(evolver);
        nft.evolve(id, digest, 0);
        assertEq(nft.metadataVersion(id), 1, "version");
        assertEq(nft.metadataDigest(id), digest, "digest");
        assertEq(nft.tokenURI(id), referenceURI(digest), "tokenURI follows");
    }

    function test_evolve_revertsVersionMismatch() public {
        uint256 id = mintTo(artist);
        evolveOnce(id);
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionMismatch.selector, id, 0, 1));
        nft.evolve(id, digestOf("stale"), 0);
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionMismatch.selector, id, 5, 1));
        nft.evolve(id, digestOf("ahead"), 5);
    }

    function test_evolve_revertsZeroDigestNonexistentFrozenAndRole() public {
        uint256 id = mintTo(artist);
        vm.startPrank(evolver);
        vm.expectRevert(LivingNFT.ZeroMetadataDigest.selector);
        nft.evolve(id, bytes32(0), 0);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 99));
        nft.evolve(99, digestOf("x"), 0);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 0));
        nft.evolve(0, digestOf("x"), 0);
        vm.stopPrank();

        vm.prank(artist);
        nft.freeze(id);
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.TokenFrozen.selector, id));
        nft.evolve(id, digestOf("x"), 0);

        bytes32 role = nft.EVOLVER_ROLE();
        vm.prank(admin); // not even the admin evolves without the role
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, admin, role));
        nft.evolve(id, digestOf("x"), 0);
    }

    function test_evolve_revertsVersionOverflowAtMaxVersion() public {
        uint256 id = mintTo(artist);
        uint256 max = nft.MAX_VERSION();
        storeLane(id, max - 1);
        assertEq(nft.metadataVersion(id), max - 1, "version from storage");
        vm.prank(evolver);
        nft.evolve(id, digestOf("last"), max - 1);
        assertEq(nft.metadataVersion(id), max, "reaches MAX_VERSION");
        assertFalse(nft.isFrozen(id), "the version never spills into the frozen bit");
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionOverflow.selector, id));
        nft.evolve(id, digestOf("beyond"), max);
    }

    // ------------------------------------------------------------------ evolveBatch

    function test_evolveBatch_evolvesEachAndEmitsOneRange() public {
        mintMany(artist, 6);
        uint256[] memory ids = new uint256[](3);
        bytes32[] memory digests = new bytes32[](3);
        uint256[] memory expected = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (5, 2, 6);
        for (uint256 i = 0; i < 3; i++) {
            digests[i] = digestOf(string.concat("b", _str(i)));
        }
        for (uint256 i = 0; i < 3; i++) {
            vm.expectEmit(true, true, true, true);
            emit LivingNFT.MetadataSet(ids[i], 1, digests[i]);
        }
        vm.expectEmit(true, true, true, true);
        emit IERC4906.BatchMetadataUpdate(2, 6);
        vm.prank(evolver);
        nft.evolveBatch(ids, digests, expected);
        for (uint256 i = 0; i < 3; i++) {
            assertEq(nft.metadataVersion(ids[i]), 1, "evolved");
        }
        assertEq(nft.metadataVersion(1), 0, "untouched 1");
        assertEq(nft.metadataVersion(3), 0, "untouched 3");
        assertEq(nft.metadataVersion(4), 0, "untouched 4");
    }

    function test_evolveBatch_revertsEmptyBatchAndLengthMismatch() public {
        mintTo(artist);
        vm.startPrank(evolver);
        vm.expectRevert(LivingNFT.EmptyBatch.selector);
        nft.evolveBatch(new uint256[](0), new bytes32[](0), new uint256[](0));
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.BatchLengthMismatch.selector, 1, 2, 1));
        nft.evolveBatch(new uint256[](1), new bytes32[](2), new uint256[](1));
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.BatchLengthMismatch.selector, 1, 1, 0));
        nft.evolveBatch(new uint256[](1), new bytes32[](1), new uint256[](0));
        vm.stopPrank();
    }

    function test_evolveBatch_revertsAsAWholeOnOneStaleVersion() public {
        mintMany(artist, 3);
        evolveOnce(3);
        uint256[] memory ids = new uint256[](3);
        bytes32[] memory digests = new bytes32[](3);
        uint256[] memory expected = new uint256[](3); // all 0, token 3 is at 1
        (ids[0], ids[1], ids[2]) = (1, 2, 3);
        for (uint256 i = 0; i < 3; i++) {
            digests[i] = digestOf(string.concat("s", _str(i)));
        }
        vm.prank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.VersionMismatch.selector, 3, 0, 1));
        nft.evolveBatch(ids, digests, expected);
        assertEq(nft.metadataVersion(1), 0, "nothing of the batch stayed");
    }

    function test_evolveBatch_revertsZeroDigestNonexistentAndFrozen() public {
        mintMany(artist, 2);
        vm.prank(artist);
        nft.freeze(2);
        uint256[] memory ids = new uint256[](2);
        bytes32[] memory digests = new bytes32[](2);
        uint256[] memory expected = new uint256[](2);
        (ids[0], ids[1]) = (1, 2);
        (digests[0], digests[1]) = (digestOf("a"), digestOf("b"));
        vm.startPrank(evolver);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.TokenFrozen.selector, 2));
        nft.evolveBatch(ids, digests, expected);
        ids[1] = 3;
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 3));
        nft.evolveBatch(ids, digests, expected);
        digests[0] = bytes32(0);
        vm.expectRevert(LivingNFT.ZeroMetadataDigest.selector);
        nft.evolveBatch(ids, digests, expected);
        vm.stopPrank();
        assertEq(nft.metadataVersion(1), 0, "nothing changed");
    }

    function test_evolveBatch_revertsWithoutEvolverRole() public {
        mintTo(artist);
        bytes32 role = nft.EVOLVER_ROLE();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role)
        );
        nft.evolveBatch(new uint256[](1), new bytes32[](1), new uint256[](1));
    }

    // ------------------------------------------------------------------ freeze

    function test_freeze_byOwnerEmitsPermanentURI() public {
        uint256 id = mintTo(artist);
        string memory uri = nft.tokenURI(id);
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.PermanentURI(uri, id);
        vm.prank(artist);
        nft.freeze(id);
        assertTrue(nft.isFrozen(id), "frozen");
        vm.prank(artist);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.TokenFrozen.selector, id));
        nft.freeze(id);
    }

    function test_freeze_byAdminOfATokenItDoesNotOwn() public {
        uint256 id = mintTo(artist);
        vm.prank(admin);
        nft.freeze(id);
        assertTrue(nft.isFrozen(id), "frozen");
    }

    function test_freeze_revertsNotOwnerOrAdminAndNonexistent() public {
        uint256 id = mintTo(artist);
        vm.prank(evolver); // an evolver is not enough
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.NotOwnerOrAdmin.selector, evolver, id));
        nft.freeze(id);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 7));
        nft.freeze(7);
    }

    // ------------------------------------------------------------------ refreshAll and settings

    function test_refreshAll_byAdminOrEvolver() public {
        vm.expectEmit(true, true, true, true);
        emit IERC4906.BatchMetadataUpdate(0, type(uint256).max);
        vm.prank(admin);
        nft.refreshAll();
        vm.prank(evolver);
        nft.refreshAll();
        vm.prank(minter);
        vm.expectRevert(abi.encodeWithSelector(LivingNFT.NotAdminOrEvolver.selector, minter));
        nft.refreshAll();
    }

    function test_setContractURI() public {
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.ContractURIUpdated();
        vm.prank(admin);
        nft.setContractURI("ipfs://new");
        assertEq(nft.contractURI(), "ipfs://new", "contractURI");
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, bytes32(0))
        );
        nft.setContractURI("ipfs://nope");
    }

    function test_setDefaultRoyalty() public {
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.DefaultRoyaltySet(collector, 1000);
        vm.prank(admin);
        nft.setDefaultRoyalty(collector, 1000);
        (address receiver, uint256 amount) = nft.royaltyInfo(1, 1 ether);
        assertEq(receiver, collector, "receiver");
        assertEq(amount, 0.1 ether, "amount");
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(ERC2981.ERC2981InvalidDefaultRoyalty.selector, 10_001, 10_000));
        nft.setDefaultRoyalty(collector, 10_001);
        vm.expectRevert(abi.encodeWithSelector(ERC2981.ERC2981InvalidDefaultRoyaltyReceiver.selector, address(0)));
        nft.setDefaultRoyalty(address(0), 100);
        vm.stopPrank();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, bytes32(0))
        );
        nft.setDefaultRoyalty(stranger, 1);
    }

    function test_setTokenRoyalty() public {
        uint256 id = mintTo(artist);
        uint256 other = mintTo(artist);
        vm.expectEmit(true, true, true, true);
        emit LivingNFT.TokenRoyaltySet(id, collector, 700);
        vm.prank(admin);
        nft.setTokenRoyalty(id, collector, 700);
        (address receiver, uint256 amount) = nft.royaltyInfo(id, 10_000);
        assertEq(receiver, collector, "token receiver");
        assertEq(amount, 700, "token amount");
        (receiver, amount) = nft.royaltyInfo(other, 10_000);
        assertEq(receiver, royaltyReceiver, "other keeps the default");
        assertEq(amount, 500, "default amount");
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 42));
        nft.setTokenRoyalty(42, collector, 1);
        vm.expectRevert(abi.encodeWithSelector(ERC2981.ERC2981InvalidTokenRoyalty.selector, id, 10_001, 10_000));
        nft.setTokenRoyalty(id, collector, 10_001);
        vm.expectRevert(abi.encodeWithSelector(ERC2981.ERC2981InvalidTokenRoyaltyReceiver.selector, id, address(0)));
        nft.setTokenRoyalty(id, address(0), 1);
        vm.stopPrank();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, bytes32(0))
        );
        nft.setTokenRoyalty(id, stranger, 1);
    }

    function test_roles_grantRevokeRenounce() public {
        bytes32 role = nft.EVOLVER_ROLE();
        vm.prank(admin);
        nft.grantRole(role, stranger);
        assertTrue(nft.hasRole(role, stranger), "granted");
        vm.prank(admin);
        nft.revokeRole(role, stranger);
        assertFalse(nft.hasRole(role, stranger), "revoked");
        vm.prank(evolver);
        vm.expectRevert(IAccessControl.AccessControlBadConfirmation.selector);
        nft.renounceRole(role, stranger);
        vm.prank(evolver);
        nft.renounceRole(role, evolver);
        assertFalse(nft.hasRole(role, evolver), "renounced");
        vm.prank(minter);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, minter, bytes32(0))
        );
        nft.grantRole(role, minter);
    }

    // ------------------------------------------------------------------ reads of unknown tokens

    function test_views_revertNonexistentToken() public {
        mintTo(artist);
        bytes memory unknown = abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 2);
        vm.expectRevert(unknown);
        nft.ownerOf(2);
        vm.expectRevert(unknown);
        nft.getApproved(2);
        vm.expectRevert(unknown);
        nft.tokenURI(2);
        vm.expectRevert(unknown);
        nft.metadataDigest(2);
        vm.expectRevert(unknown);
        nft.metadataVersion(2);
        vm.expectRevert(unknown);
        nft.isFrozen(2);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidOwner.selector, address(0)));
        nft.balanceOf(address(0));
    }

    function test_tokenURI_isTheRawCIDv1() public {
        uint256 id = mintTo(artist);
        // sha256("") = e3b0c442..., whose raw CIDv1 is a well-known value.
        vm.prank(evolver);
        nft.evolve(id, 0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855, 0);
        assertEq(nft.tokenURI(id), "ipfs://bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", "empty file");
    }

    // ------------------------------------------------------------------ ERC-721 transfers and approvals

    function test_approve_getApproved_andClearedOnTransfer() public {
        uint256 id = mintTo(artist);
        vm.expectEmit(true, true, true, true);
        emit IERC721.Approval(artist, collector, id);
        vm.prank(artist);
        nft.approve(collector, id);
        assertEq(nft.getApproved(id), collector, "approved");
        vm.prank(collector);
        nft.transferFrom(artist, stranger, id);
        assertEq(nft.getApproved(id), address(0), "cleared");
        assertEq(nft.ownerOf(id), stranger, "moved");
    }

    function test_approve_revertsInvalidApprover() public {
        uint256 id = mintTo(artist);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidApprover.selector, stranger));
        nft.approve(stranger, id);
        vm.prank(artist);
        nft.approve(collector, id);
        vm.prank(collector); // a token-level approval may not approve others
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidApprover.selector, collector));
        nft.approve(stranger, id);
    }

    function test_setApprovalForAll_andOperatorApproves() public {
        uint256 id = mintTo(artist);
        vm.expectEmit(true, true, true, true);
        emit IERC721.ApprovalForAll(artist, collector, true);
        vm.prank(artist);
        nft.setApprovalForAll(collector, true);
        assertTrue(nft.isApprovedForAll(artist, collector), "operator");
        vm.prank(collector); // an operator may approve
        nft.approve(stranger, id);
        assertEq(nft.getApproved(id), stranger, "approved by operator");
        vm.prank(artist);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidOperator.selector, address(0)));
        nft.setApprovalForAll(address(0), true);
    }

    function test_transferFrom_reverts() public {
        uint256 id = mintTo(artist);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InsufficientApproval.selector, stranger, id));
        nft.transferFrom(artist, stranger, id);
        vm.prank(artist);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidReceiver.selector, address(0)));
        nft.transferFrom(artist, address(0), id);
        vm.prank(artist);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721IncorrectOwner.selector, collector, id, artist));
        nft.transferFrom(collector, stranger, id);
        vm.prank(artist);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 9));
        nft.transferFrom(artist, stranger, 9);
    }

    function test_safeTransferFrom_callsTheReceiver() public {
        uint256 id = mintTo(artist);
        AcceptingReceiver receiver = new AcceptingReceiver();
        vm.prank(artist);
        nft.safeTransferFrom(artist, address(receiver), id, "hello");
        assertEq(nft.ownerOf(id), address(receiver), "owner");
        assertEq(receiver.lastOperator(), artist, "operator");
        assertEq(receiver.lastFrom(), artist, "from");
        assertEq(receiver.lastTokenId(), id, "tokenId");
        assertEq(receiver.lastData(), bytes("hello"), "data");

        uint256 other = mintTo(artist);
        vm.prank(artist);
        nft.safeTransferFrom(artist, address(receiver), other); // the 3-argument form sends empty data
        assertEq(receiver.lastData(), bytes(""), "empty data");
        assertEq(receiver.calls(), 2, "calls");
        id = mintTo(artist); // to an EOA: no callback
        vm.prank(artist);
        nft.safeTransferFrom(artist, collector, id);
        assertEq(nft.ownerOf(id), collector, "to an EOA");
    }

    function test_safeTransferFrom_revertsForRefusingReceivers() public {
        uint256 id = mintTo(artist);
        address wrong = address(new WrongValueReceiver());
        address none = address(new NotAReceiver());
        address silent = address(new SilentRevertReceiver());
        address reverting = address(new RevertingReceiver());
        vm.startPrank(artist);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidReceiver.selector, wrong));
        nft.safeTransferFrom(artist, wrong, id);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidReceiver.selector, none));
        nft.safeTransferFrom(artist, none, id);
        vm.expectRevert(abi.encodeWithSelector(IERC721Errors.ERC721InvalidReceiver.selector, silent));
        nft.safeTransferFrom(artist, silent, id);
        vm.expectRevert(bytes("no tokens here"));
        nft.safeTransferFrom(artist, reverting, id);
        vm.stopPrank();
        assertEq(nft.ownerOf(id), artist, "still the artist's");
    }
}
