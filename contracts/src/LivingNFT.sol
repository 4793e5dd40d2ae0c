// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC165} from "@openzeppelin/contracts/interfaces/IERC165.sol";
import {IERC4906} from "@openzeppelin/contracts/interfaces/IERC4906.sol";
import {ERC2981} from "@openzeppelin/contracts/token/common/ERC2981.sol";
import {PackedERC721} from "./PackedERC721.sol";

/**
 * @title LivingNFT
 * @notice ERC-721 collection whose tokens evolve: each token points at the CIDv1 of its current metadata
 * JSON on IPFS, and every change is logged so that a token's whole history can be rebuilt from events.
 *
 * @dev Storage per token, chosen for gas (a later mint, single evolve and batch evolve each touch as few
 * cold slots as possible):
 *  - `_digests[id]`: the 32-byte sha2-256 digest of the metadata's CIDv1 (raw codec 0x55). `tokenURI`
 *    renders `ipfs://` + base32 of `0x01 0x55 0x12 0x20 || digest`, i.e. `ipfs://bafkrei...`.
 *    A token exists exactly when its digest is non-zero (mint refuses the zero digest, nothing burns).
 *  - version and frozen flag: 24 bits per token (bit 23 frozen, bits 0-22 version), four tokens per
 *    word, kept in the spare 96 bits of the owner slot of the group's first token ("anchor": ids 1, 5, 9,
 *    ...). Mint writes that slot anyway, so version 0 costs nothing, and a batch of consecutive tokens
 *    updates one anchor slot per four tokens.
 *  - `mintBatch` stores each token's digest like `mint` does (so evolving a batch-minted token costs
 *    exactly what evolving any other token costs) but writes an owner slot only per anchor and for the
 *    batch's first token (PackedERC721's `_mintConsecutive`): the other tokens read their owner from
 *    at most three slots below.
 */
contract LivingNFT is PackedERC721, ERC2981, AccessControl, IERC4906 {
    /// @notice Role allowed to mint (artists / the studio's publishing service).
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    /// @notice Role allowed to evolve tokens (the evolution operator).
    bytes32 public constant EVOLVER_ROLE = keccak256("EVOLVER_ROLE");

    /// @notice Largest version a token can reach (23 bits).
    uint256 public constant MAX_VERSION = (1 << 23) - 1;

    uint256 private constant _LANE_BITS = 24;
    uint256 private constant _LANE_MASK = (1 << 24) - 1;
    uint256 private constant _FROZEN_BIT = 1 << 23;
    uint256 private constant _VERSION_MASK = (1 << 23) - 1;
    uint256 private constant _TOKENS_PER_ANCHOR = 4;

    /// @dev base32 lower-case alphabet (RFC 4648), one character per byte.
    bytes32 private constant _BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

    mapping(uint256 tokenId => bytes32) private _digests;
    uint256 private _nextTokenId = 1;
    string private _contractURI;

    /// @notice A token's metadata was set: at mint (version 0) and at every evolution. The list of these
    /// events for a token is its complete metadata history.
    event MetadataSet(uint256 indexed tokenId, uint256 indexed version, bytes32 metadataDigest);
    /// @notice OpenSea's signal that a token's metadata will never change again.
    event PermanentURI(string _value, uint256 indexed _id);
    /// @notice ERC-7572: the collection-level metadata changed.
    event ContractURIUpdated();
    /// @notice The collection's default ERC-2981 royalty changed.
    event DefaultRoyaltySet(address indexed receiver, uint96 feeNumerator);
    /// @notice One token's ERC-2981 royalty was set.
    event TokenRoyaltySet(uint256 indexed tokenId, address indexed receiver, uint96 feeNumerator);

    /// @notice The zero digest is not a metadata CID.
    error ZeroMetadataDigest();
    /// @notice The token is frozen: its metadata can no longer change.
    error TokenFrozen(uint256 tokenId);
    /// @notice `tokenIds`, `digests` and `expectedVersions` differ in length.
    error BatchLengthMismatch(uint256 tokenIds, uint256 digests, uint256 expectedVersions);
    /// @notice A batch must hold at least one token.
    error EmptyBatch();
    /// @notice Only the token's owner or an admin may freeze it.
    error NotOwnerOrAdmin(address caller, uint256 tokenId);
    /// @notice Only an admin or an evolver may signal a collection-wide refresh.
    error NotAdminOrEvolver(address caller);
    /// @notice The token reached MAX_VERSION.
    error VersionOverflow(uint256 tokenId);
    /// @notice Compare-and-set failed: the token's version is `actual`, the caller expected `expected`
    /// (someone else evolved it in between). Nothing changed.
    error VersionMismatch(uint256 tokenId, uint256 expected, uint256 actual);

    /**
     * @param name_ collection name
     * @param symbol_ collection symbol
     * @param admin receives DEFAULT_ADMIN_ROLE (grants MINTER_ROLE and EVOLVER_ROLE)
     * @param royaltyReceiver default ERC-2981 royalty receiver
     * @param royaltyBps default royalty in basis points (of 10,000)
     * @param contractURI_ ERC-7572 collection metadata URI (may be empty)
     */
    constructor(
        string memory name_,
        string memory symbol_,
        address admin,
        address royaltyReceiver,
        uint96 royaltyBps,
        string memory contractURI_
    ) PackedERC721(name_, symbol_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _setDefaultRoyalty(royaltyReceiver, royaltyBps);
        emit DefaultRoyaltySet(royaltyReceiver, royaltyBps);
        _contractURI = contractURI_;
        emit ContractURIUpdated();
    }

    // ------------------------------------------------------------------ minting and evolution

    /**
     * @notice Mints the next token to `to` with its first metadata (version 0).
     * @dev Plain `_mint` (no receiver callback): tokens go to the artist's wallet; a contract receiver
     * must accept ERC-721 tokens by itself. Emits Transfer, MetadataSet and MetadataUpdate.
     * @param to the token's first owner
     * @param digest sha2-256 digest of the metadata JSON (its CIDv1 raw-codec multihash digest)
     * @return tokenId the new token's id (ids start at 1)
     */
    function mint(address to, bytes32 digest) external onlyRole(MINTER_ROLE) returns (uint256 tokenId) {
        if (digest == bytes32(0)) revert ZeroMetadataDigest();
        tokenId = _nextTokenId;
        unchecked {
            _nextTokenId = tokenId + 1;
        }
        _mint(to, tokenId);
        _digests[tokenId] = digest;
        emit MetadataSet(tokenId, 0, digest);
        emit MetadataUpdate(tokenId);
    }

    /**
     * @notice Mints one token per digest to `to`, with consecutive ids, each with its own first metadata
     * (version 0): a drop in one transaction.
     * @dev Each token gets what `mint` gives it: a Transfer from the zero address, its digest stored (so
     * tokenURI, evolution, freeze and royalties work on it as on any token) and MetadataSet(id, 0, digest);
     * then one BatchMetadataUpdate over the new range instead of a MetadataUpdate per token. No receiver
     * callback, like `mint`. One zero digest reverts the whole batch (ZeroMetadataDigest).
     * @param to every token's first owner
     * @param digests sha2-256 digest of each token's metadata JSON, in id order
     * @return firstTokenId the first new id; the tokens are firstTokenId .. firstTokenId + digests.length - 1
     */
    function mintBatch(
        address to,
        bytes32[] calldata digests
    ) external onlyRole(MINTER_ROLE) returns (uint256 firstTokenId) {
        uint256 count = digests.length;
        if (count == 0) revert EmptyBatch();
        firstTokenId = _nextTokenId;
        uint256 end = firstTokenId + count;
        _nextTokenId = end;
        _mintConsecutive(to, firstTokenId, count);
        unchecked {
            for (uint256 i = 0; i < count; ++i) {
                bytes32 digest = digests[i];
                if (digest == bytes32(0)) revert ZeroMetadataDigest();
                uint256 tokenId = firstTokenId + i;
                _digests[tokenId] = digest;
                emit MetadataSet(tokenId, 0, digest);
            }
            emit BatchMetadataUpdate(firstTokenId, end - 1);
        }
    }

    /**
     * @notice Sets a token's new metadata and bumps its version, if its version is still `expectedVersion`.
     * @dev Compare-and-set, so that two evolvers (or two processes of one studio) can never both build on
     * the same version: the second one reverts VersionMismatch instead of silently stacking a version
     * whose provenance names the wrong predecessor. Reverts ERC721NonexistentToken for an unknown id,
     * TokenFrozen after `freeze`.
     * @param tokenId the token
     * @param digest sha2-256 digest of the new metadata JSON
     * @param expectedVersion the token's current version as the caller knows it (the new one is this + 1)
     */
    function evolve(uint256 tokenId, bytes32 digest, uint256 expectedVersion) external onlyRole(EVOLVER_ROLE) {
        uint256 version = _setMetadata(tokenId, digest, expectedVersion);
        emit MetadataSet(tokenId, version, digest);
        emit MetadataUpdate(tokenId);
    }

    /**
     * @notice Evolves several tokens in one transaction.
     * @dev One MetadataSet per token (the history) and one BatchMetadataUpdate over the lowest..highest id
     * (marketplaces refresh that range; refreshing an unchanged token in between is harmless). Consecutive
     * ids are cheapest: four tokens share one version word.
     * Each token is compare-and-set like `evolve`: one stale expected version reverts the whole batch
     * with VersionMismatch, so the caller can drop that token and send the rest again.
     * @param tokenIds the tokens, each at most once per batch is expected (a repeat evolves twice, and
     * then needs its second expected version to be the first + 1)
     * @param digests the new digest of each token, in the same order
     * @param expectedVersions each token's current version as the caller knows it, in the same order
     */
    function evolveBatch(
        uint256[] calldata tokenIds,
        bytes32[] calldata digests,
        uint256[] calldata expectedVersions
    ) external onlyRole(EVOLVER_ROLE) {
        uint256 count = tokenIds.length;
        if (count != digests.length || count != expectedVersions.length) {
            revert BatchLengthMismatch(count, digests.length, expectedVersions.length);
        }
        if (count == 0) revert EmptyBatch();
        uint256 lowest = type(uint256).max;
        uint256 highest = 0;
        for (uint256 i = 0; i < count; ) {
            uint256 tokenId = tokenIds[i];
            bytes32 digest = digests[i];
            uint256 version = _setMetadata(tokenId, digest, expectedVersions[i]);
            emit MetadataSet(tokenId, version, digest);
            if (tokenId < lowest) lowest = tokenId;
            if (tokenId > highest) highest = tokenId;
            unchecked {
                ++i;
            }
        }
        emit BatchMetadataUpdate(lowest, highest);
    }

    /**
     * @notice Freezes a token's metadata for ever (irreversible) and emits OpenSea's PermanentURI.
     * @param tokenId the token; the caller must own it or hold DEFAULT_ADMIN_ROLE
     */
    function freeze(uint256 tokenId) external {
        address owner = _requireOwned(tokenId);
        if (_msgSender() != owner && !hasRole(DEFAULT_ADMIN_ROLE, _msgSender())) {
            revert NotOwnerOrAdmin(_msgSender(), tokenId);
        }
        (uint256 anchor, uint256 shift) = _lane(tokenId);
        uint256 word = _aux(anchor);
        if ((word >> shift) & _FROZEN_BIT != 0) revert TokenFrozen(tokenId);
        _setAux(anchor, uint96(word | (_FROZEN_BIT << shift)));
        emit PermanentURI(tokenURI(tokenId), tokenId);
    }

    /**
     * @notice Asks marketplaces to refresh every token's metadata (ERC-4906 BatchMetadataUpdate(0, max)).
     * @dev Changes no state; allowed to admins and evolvers.
     */
    function refreshAll() external {
        if (!hasRole(DEFAULT_ADMIN_ROLE, _msgSender()) && !hasRole(EVOLVER_ROLE, _msgSender())) {
            revert NotAdminOrEvolver(_msgSender());
        }
        emit BatchMetadataUpdate(0, type(uint256).max);
    }

    // ------------------------------------------------------------------ collection settings

    /**
     * @notice Sets the ERC-7572 collection metadata URI.
     * @param newContractURI the new URI (usually ipfs://...)
     */
    function setContractURI(string calldata newContractURI) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _contractURI = newContractURI;
        emit ContractURIUpdated();
    }

    /**
     * @notice Sets the collection's default ERC-2981 royalty.
     * @param receiver who receives royalties
     * @param feeNumerator royalty in basis points (of 10,000)
     */
    function setDefaultRoyalty(address receiver, uint96 feeNumerator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setDefaultRoyalty(receiver, feeNumerator);
        emit DefaultRoyaltySet(receiver, feeNumerator);
    }

    /**
     * @notice Sets one token's ERC-2981 royalty, overriding the default.
     * @param tokenId the token (must exist)
     * @param receiver who receives royalties
     * @param feeNumerator royalty in basis points (of 10,000)
     */
    function setTokenRoyalty(
        uint256 tokenId,
        address receiver,
        uint96 feeNumerator
    ) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _requireOwned(tokenId);
        _setTokenRoyalty(tokenId, receiver, feeNumerator);
        emit TokenRoyaltySet(tokenId, receiver, feeNumerator);
    }

    // ------------------------------------------------------------------ views

    /// @notice ERC-7572 collection metadata URI.
    function contractURI() external view returns (string memory) {
        return _contractURI;
    }

    /// @notice Number of tokens minted so far (nothing burns, so also the highest id).
    function totalSupply() external view returns (uint256) {
        return _nextTokenId - 1;
    }

    /// @notice The sha2-256 digest of the token's current metadata CID.
    function metadataDigest(uint256 tokenId) external view returns (bytes32) {
        return _existingDigest(tokenId);
    }

    /// @notice The token's metadata version: 0 at mint, +1 per evolution.
    function metadataVersion(uint256 tokenId) external view returns (uint256) {
        _existingDigest(tokenId);
        (uint256 anchor, uint256 shift) = _lane(tokenId);
        return (uint256(_aux(anchor)) >> shift) & _VERSION_MASK;
    }

    /// @notice Whether the token's metadata is frozen for ever.
    function isFrozen(uint256 tokenId) external view returns (bool) {
        _existingDigest(tokenId);
        (uint256 anchor, uint256 shift) = _lane(tokenId);
        return (uint256(_aux(anchor)) >> shift) & _FROZEN_BIT != 0;
    }

    /**
     * @notice `ipfs://` + the CIDv1 (base32, raw codec, sha2-256) of the token's current metadata JSON.
     * @dev The 36 CID bytes are 0x01 0x55 0x12 0x20 || digest: their first 30 bits always encode as
     * "afkrei", so only the digest's 256 bits (plus 2 zero pad bits) are encoded here, 5 bits a character.
     */
    function tokenURI(uint256 tokenId) public view override returns (string memory uri) {
        uint256 digest = uint256(_existingDigest(tokenId));
        uri = "ipfs://bafkreiXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
        bytes32 alphabet = _BASE32;
        assembly ("memory-safe") {
            // Characters 14..65 of the string (after "ipfs://bafkrei") hold the digest: the 2 trailing
            // bits of 0x20 (zero) + the digest's top 3 bits, then 50 groups of 5 bits, then the last 3
            // bits padded with 2 zero bits.
            let out := add(uri, 32)
            mstore8(add(out, 14), byte(shr(253, digest), alphabet))
            for {
                let i := 0
            } lt(i, 50) {
                i := add(i, 1)
            } {
                mstore8(add(out, add(15, i)), byte(and(shr(sub(248, mul(5, i)), digest), 31), alphabet))
            }
            mstore8(add(out, 65), byte(shl(2, and(digest, 7)), alphabet))
        }
    }

    /// @inheritdoc PackedERC721
    function supportsInterface(
        bytes4 interfaceId
    ) public view override(PackedERC721, ERC2981, AccessControl, IERC165) returns (bool) {
        return interfaceId == bytes4(0x49064906) || super.supportsInterface(interfaceId);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Writes a new digest and bumps the version if it is `expected`; returns the new version.
    function _setMetadata(uint256 tokenId, bytes32 newDigest, uint256 expected) private returns (uint256 version) {
        if (newDigest == bytes32(0)) revert ZeroMetadataDigest();
        _existingDigest(tokenId);
        (uint256 anchor, uint256 shift) = _lane(tokenId);
        uint256 word = _aux(anchor);
        uint256 lane = (word >> shift) & _LANE_MASK;
        if (lane & _FROZEN_BIT != 0) revert TokenFrozen(tokenId);
        // The frozen bit is clear, so the lane is the version.
        if (lane != expected) revert VersionMismatch(tokenId, expected, lane);
        version = lane + 1;
        if (version > MAX_VERSION) revert VersionOverflow(tokenId);
        _setAux(anchor, uint96((word & ~(_LANE_MASK << shift)) | (version << shift)));
        _digests[tokenId] = newDigest;
    }

    /// @dev A token exists exactly when its digest is set; asked by PackedERC721 only for empty owner slots.
    function _mintedConsecutively(uint256 tokenId) internal view override returns (bool) {
        return _digests[tokenId] != bytes32(0);
    }

    /// @dev The token's digest; reverts ERC721NonexistentToken when it was never minted.
    function _existingDigest(uint256 tokenId) private view returns (bytes32 digest) {
        digest = _digests[tokenId];
        if (digest == bytes32(0)) revert ERC721NonexistentToken(tokenId);
    }

    /// @dev Where a token's 24-bit lane lives: the anchor token's aux word and the bit offset in it.
    function _lane(uint256 tokenId) private pure returns (uint256 anchor, uint256 shift) {
        unchecked {
            uint256 index = (tokenId - 1) % _TOKENS_PER_ANCHOR; // tokenId >= 1 is checked by the caller
            anchor = tokenId - index;
            shift = index * _LANE_BITS;
        }
    }
}
