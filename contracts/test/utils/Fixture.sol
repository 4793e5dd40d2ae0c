// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {LivingNFT} from "../../src/LivingNFT.sol";
import {Test} from "./Test.sol";

/// @dev A deployed LivingNFT with one account per role, and helpers that reach into its packed storage.
abstract contract Fixture is Test {
    LivingNFT internal nft;
    address internal admin;
    address internal minter;
    address internal evolver;
    address internal artist;
    address internal collector;
    address internal stranger;
    address internal royaltyReceiver;

    /// @dev PackedERC721's `_packedOwners` mapping (after `_name`, `_symbol`); checked by
    /// test_storageLayout_ownerSlotIsWhereTheTestsLook.
    uint256 internal constant PACKED_OWNERS_SLOT = 2;

    function setUp() public virtual {
        admin = makeAddr("admin");
        minter = makeAddr("minter");
        evolver = makeAddr("evolver");
        artist = makeAddr("artist");
        collector = makeAddr("collector");
        stranger = makeAddr("stranger");
        royaltyReceiver = makeAddr("royalty");
        nft = new LivingNFT("Living", "LIVE", admin, royaltyReceiver, 500, "ipfs://collection");
        vm.startPrank(admin);
        nft.grantRole(nft.MINTER_ROLE(), minter);
        nft.grantRole(nft.EVOLVER_ROLE(), evolver);
        vm.stopPrank();
    }

    /// @dev A stand-in metadata digest (keccak, not sha256: a precompile call would take a pending prank).
    function digestOf(string memory label) internal pure returns (bytes32) {
        return keccak256(bytes(label));
    }

    function mintTo(address to) internal returns (uint256 tokenId) {
        bytes32 digest = digestOf(string.concat("mint-", _str(nft.totalSupply() + 1)));
        vm.prank(minter);
        tokenId = nft.mint(to, digest);
    }

    function mintMany(address to, uint256 count) internal {
        for (uint256 i = 0; i < count; i++) {
            mintTo(to);
        }
    }

    function evolveOnce(uint256 tokenId) internal {
        uint256 version = nft.metadataVersion(tokenId);
        vm.prank(evolver);
        nft.evolve(tokenId, digestOf(string.concat("v", _str(version + 1), "-", _str(tokenId))), version);
    }

    /// @dev The owner slot that holds `tokenId`'s 24-bit lane (its group's first token), and the shift.
    function laneOf(uint256 tokenId) internal pure returns (bytes32 slot, uint256 shift) {
        uint256 index = (tokenId - 1) % 4;
        slot = ownerSlot(tokenId - index);
        shift = 160 + 24 * index;
    }

    function ownerSlot(uint256 tokenId) internal pure returns (bytes32) {
        return keccak256(abi.encode(tokenId, PACKED_OWNERS_SLOT));
    }

    /// @dev Writes a token's raw 24-bit lane (bit 23 frozen, bits 0-22 version), keeping everything else.
    function storeLane(uint256 tokenId, uint256 lane) internal {
        (bytes32 slot, uint256 shift) = laneOf(tokenId);
        uint256 word = uint256(vm.load(address(nft), slot));
        word = (word & ~(uint256(0xffffff) << shift)) | ((lane & 0xffffff) << shift);
        vm.store(address(nft), slot, bytes32(word));
    }

    /// @dev The ipfs:// URI of a raw-codec sha2-256 CIDv1, base32-encoded the plain (slow) way: the
    /// reference the contract's assembly renderer is checked against.
    function referenceURI(bytes32 digest) internal pure returns (string memory) {
        return string.concat("ipfs://", referenceCID(bytes4(0x01551220), digest));
    }

    /// @dev The tokenURI of a never-evolved drop token: its file in the drop's folder, whose CIDv1 has the
    /// dag-pb codec (0x70), encoded the same plain way.
    function referenceFolderURI(bytes32 folderDigest, uint256 tokenId) internal pure returns (string memory) {
        return string.concat("ipfs://", referenceCID(bytes4(0x01701220), folderDigest), "/", _str(tokenId), ".json");
    }

    /// @dev "b" + base32 (RFC 4648, lower case, no padding) of the CIDv1 bytes `prefix || digest`.
    function referenceCID(bytes4 prefix, bytes32 digest) internal pure returns (string memory) {
        bytes memory cid = abi.encodePacked(prefix, digest);
        bytes memory alphabet = "abcdefghijklmnopqrstuvwxyz234567";
        bytes memory out = new bytes((cid.length * 8 + 4) / 5);
        uint256 buffer;
        uint256 bits;
        uint256 n;
        for (uint256 i = 0; i < cid.length; i++) {
            buffer = (buffer << 8) | uint8(cid[i]);
            bits += 8;
            while (bits >= 5) {
                bits -= 5;
                out[n++] = alphabet[(buffer >> bits) & 31];
            }
            buffer &= (1 << bits) - 1;
        }
        if (bits > 0) out[n++] = alphabet[(buffer << (5 - bits)) & 31];
        return string.concat("b", string(out));
    }

    /// @dev `count` stand-in digests: digestOf(`prefix` + index).
    function digests(string memory prefix, uint256 count) internal pure returns (bytes32[] memory out) {
        out = new bytes32[](count);
        for (uint256 i = 0; i < count; i++) {
            out[i] = digestOf(string.concat(prefix, _str(i)));
        }
    }

    /// @dev Expects what a marketplace indexes for tokens minted together from `first` on, as for tokens
    /// minted one by one: a Transfer from zero per token, then a MetadataSet (version 0) per token.
    function expectMintedOneByOne(address to, uint256 first, bytes32[] memory tokenDigests) internal {
        for (uint256 i = 0; i < tokenDigests.length; i++) {
            vm.expectEmit(true, true, true, true);
            emit IERC721.Transfer(address(0), to, first + i);
        }
        for (uint256 i = 0; i < tokenDigests.length; i++) {
            vm.expectEmit(true, true, true, true);
            emit LivingNFT.MetadataSet(first + i, 0, tokenDigests[i]);
        }
    }

    /// @dev Mints a drop of `count` tokens to `to` at the next ids, with stand-in digests (`prefix` + index).
    function mintDropTo(address to, uint256 count, bytes32 folder, string memory prefix)
        internal
        returns (uint256 first, bytes32[] memory dropDigests)
    {
        dropDigests = digests(prefix, count);
        first = nft.totalSupply() + 1;
        vm.prank(minter);
        nft.mintDrop(to, first, folder, dropDigests);
    }
}
