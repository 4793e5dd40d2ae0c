// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC165} from "@openzeppelin/contracts/interfaces/IERC165.sol";
import {IERC4906} from "@openzeppelin/contracts/interfaces/IERC4906.sol";
import {ERC2981} from "@openzeppelin/contracts/token/common/ERC2981.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
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
 *    Every token minted by `mint` or `mintBatch` has one from its mint on; a token minted by `mintDrop`
 *    has none (zero) until its first evolution writes one.
 *  - A token exists exactly when 1 <= id < `_nextTokenId` (nothing burns). Where a token's digest is read
 *    anyway (evolve, freeze, tokenURI), a non-zero digest proves it exists and `_nextTokenId` is read only
 *    for a zero one, so evolving or freezing a token with its own digest costs what it did before drops.
 *  - version and frozen flag: 24 bits per token (bit 23 frozen, bits 0-22 version), four tokens per
 *    word, kept in the spare 96 bits of the owner slot of the group's first token ("anchor": ids 1, 5, 9,
 *    ...). Mint writes that slot anyway, so version 0 costs nothing, and a batch of consecutive tokens
 *    updates one anchor slot per four tokens.
 *  - `mintBatch` stores each token's digest like `mint` does (so evolving a batch-minted token costs
 *    exactly what evolving any other token costs) but writes an owner slot only per anchor and for the
 *    batch's first token (PackedERC721's `_mintConsecutive`): the other tokens read their owner from
 *    at most three slots below.
 *  - `mintDrop` stores no digest at all: it records the drop once (`_drops`: first and last id, and the
 *    sha2-256 digest of the drop's IPFS folder, a dag-pb directory holding `<tokenId>.json` per token) and
 *    writes only the owner slots `mintBatch` writes. Until its first evolution a drop token's tokenURI is
 *    `ipfs://<folder CIDv1>/<tokenId>.json`; its MetadataSet(id, 0, digest) event still names the digest
 *    of that very file, so the history reads the same as any token's. The first evolution pays for the
 *    token's own digest slot (a zero-to-non-zero write), after which it is like any other token.
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

    /// @dev One `mintDrop`: its ids and the sha2-256 digest of its metadata folder (CIDv1 dag-pb).
    struct Drop {
        uint128 firstTokenId;
        uint128 lastTokenId;
        bytes32 folderDigest;
    }

    mapping(uint256 tokenId => bytes32) private _digests;
    uint256 private _nextTokenId = 1;
    string private _contractURI;
    /// @dev Append-only, so ascending by first id: tokenURI finds a token's drop by binary search.
    Drop[] private _drops;

    /// @notice A token's metadata was set: at mint (version 0) and at every evolution. The list of these
    /// events for a token is its complete metadata history.
    event MetadataSet(uint256 indexed tokenId, uint256 indexed version, bytes32 metadataDigest);
    /// @notice OpenSea's signal that a token's metadata will never change again.
    event PermanentURI(string _value, uint256 indexed _id);
    /// @notice `mintDrop` minted `firstTokenId`..`lastTokenId`, whose metadata files are
    /// `<tokenId>.json` in the IPFS folder whose CIDv1 (dag-pb, sha2-256) has the digest `folderDigest`.
    event DropMinted(uint256 indexed firstTokenId, uint256 lastTokenId, bytes32 folderDigest);
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
    /// @notice `mintDrop` was built for ids starting at `firstTokenId` but the next id is `nextTokenId` (another
    /// mint came first): the folder's file names would not match the ids. Nothing changed; rebuild the folder for
    /// ids from `next` and send again.
    error UnexpectedFirstTokenId(uint256 nextTokenId, uint256 firstTokenId);
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
     * @dev No receiver callback (like OpenZeppelin's `_mint`): tokens go to the artist's wallet; a contract
     * receiver must accept ERC-721 tokens by itself. Emits Transfer, MetadataSet and MetadataUpdate.
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
        // The next id was never minted and lies above every minted one: no owner to look up.
        _mintNext(to, tokenId);
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
     * @notice Mints one token per digest to `to`, with consecutive ids from `firstTokenId`, whose metadata
     * stays in one IPFS folder until each token's first evolution: the cheapest drop.
     * @dev Each token gets a Transfer from the zero address and MetadataSet(id, 0, digest) like a token of
     * `mintBatch`, but no digest is stored: the drop is recorded once (first and last id, folder digest,
     * DropMinted) and tokenURI renders `ipfs://<folder CIDv1>/<tokenId>.json` until the token's first
     * `evolve`, which stores its own digest. Then one BatchMetadataUpdate over the new range. No receiver
     * callback, like `mint`.
     * The folder's files are named by token id, so the caller states the ids it built the folder for:
     * `firstTokenId` must be the next id (else UnexpectedFirstTokenId, nothing minted).
     * @param to every token's first owner
     * @param firstTokenId the next token id, the one the folder's first file is named after
     * @param folderDigest sha2-256 digest of the folder's CIDv1 (dag-pb codec 0x70): a directory holding
     * `<tokenId>.json` (decimal, no padding) for every token of the drop
     * @param digests sha2-256 digest of each token's metadata JSON, in id order: the raw CIDv1 of the file
     * `<tokenId>.json` in the folder (what MetadataSet reports and the token's history starts from)
     */
    function mintDrop(
        address to,
        uint256 firstTokenId,
        bytes32 folderDigest,
        bytes32[] calldata digests
    ) external onlyRole(MINTER_ROLE) {
        uint256 count = digests.length;
        if (count == 0) revert EmptyBatch();
        if (folderDigest == bytes32(0)) revert ZeroMetadataDigest();
        uint256 next = _nextTokenId;
        if (firstTokenId != next) revert UnexpectedFirstTokenId(next, firstTokenId);
        uint256 end = firstTokenId + count;
        _nextTokenId = end;
        _mintConsecutive(to, firstTokenId, count);
        unchecked {
            uint256 last = end - 1;
            // Ids stay far below 2**128: each costs a Transfer event, so a chain mints at most a few billion.
            _drops.push(Drop(uint128(firstTokenId), uint128(last), folderDigest));
            for (uint256 i = 0; i < count; ++i) {
                bytes32 digest = digests[i];
                if (digest == bytes32(0)) revert ZeroMetadataDigest();
                emit MetadataSet(firstTokenId + i, 0, digest);
            }
            emit DropMinted(firstTokenId, last, folderDigest);
            emit BatchMetadataUpdate(firstTokenId, last);
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
        // The digest (the URI below is rendered from it) proves that the token exists; only a drop token that
        // never evolved needs the id range as well.
        bytes32 digest = _existingDigest(tokenId);
        address owner = _ownerOfExisting(tokenId);
        if (_msgSender() != owner && !hasRole(DEFAULT_ADMIN_ROLE, _msgSender())) {
            revert NotOwnerOrAdmin(_msgSender(), tokenId);
        }
        (uint256 anchor, uint256 shift) = _lane(tokenId);
        uint256 word = _aux(anchor);
        if ((word >> shift) & _FROZEN_BIT != 0) revert TokenFrozen(tokenId);
        _setAux(anchor, uint96(word | (_FROZEN_BIT << shift)));
        emit PermanentURI(_uri(tokenId, digest), tokenId);
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

    /**
     * @notice The sha2-256 digest of the token's current metadata CID (raw codec), or bytes32(0) while a token
     * minted by `mintDrop` has never evolved: it still reads its metadata from its drop's folder (see
     * `dropOf` and `tokenURI`; its MetadataSet(id, 0, ...) event names that file's digest).
     */
    function metadataDigest(uint256 tokenId) external view returns (bytes32) {
        return _existingDigest(tokenId);
    }

    /**
     * @notice The drop a token was minted in by `mintDrop`: its ids and its metadata folder's digest (the
     * sha2-256 digest of the folder's CIDv1, dag-pb codec). All zero for a token minted by `mint` or
     * `mintBatch`. A drop token keeps its drop after it evolved (then only its history starts there).
     * @dev Reverts ERC721NonexistentToken for an id never minted.
     */
    function dropOf(
        uint256 tokenId
    ) external view returns (uint256 firstTokenId, uint256 lastTokenId, bytes32 folderDigest) {
        _requireMinted(tokenId);
        (bool found, uint256 index) = _findDrop(tokenId);
        if (found) {
            Drop storage drop = _drops[index];
            (firstTokenId, lastTokenId, folderDigest) = (drop.firstTokenId, drop.lastTokenId, drop.folderDigest);
        }
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
     * @notice `ipfs://` + the CIDv1 (base32, raw codec, sha2-256) of the token's current metadata JSON; for a
     * token minted by `mintDrop` and never evolved, `ipfs://` + its drop folder's CIDv1 (base32, dag-pb,
     * sha2-256) + `/<tokenId>.json`.
     * @dev The 36 CID bytes are 0x01 0x55 0x12 0x20 || digest (0x01 0x70 0x12 0x20 for the folder): their first
     * 30 bits always encode as "afkrei" ("afybei"), so only the digest's 256 bits (plus 2 zero pad bits) are
     * encoded here, 5 bits a character. A drop token's drop is found by binary search over the drops.
     */
    function tokenURI(uint256 tokenId) public view override returns (string memory) {
        return _uri(tokenId, _existingDigest(tokenId));
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

    /// @dev A token exists exactly when 1 <= id < `_nextTokenId`; asked by PackedERC721 only for empty owner
    /// slots: on a transfer, whether the transferred token (if its slot is empty) and the next id exist. One
    /// read of `_nextTokenId` answers both (the second warm), where reading digests would not tell a drop
    /// token from an id not minted yet.
    function _mintedConsecutively(uint256 tokenId) internal view override returns (bool) {
        return tokenId != 0 && tokenId < _nextTokenId;
    }

    /// @dev The token's digest, zero for a drop token that has not evolved yet; reverts
    /// ERC721NonexistentToken when it was never minted. A non-zero digest proves existence without reading
    /// `_nextTokenId`, so evolving a token with its own digest costs what it did before drops.
    function _existingDigest(uint256 tokenId) private view returns (bytes32 digest) {
        digest = _digests[tokenId];
        if (digest == bytes32(0)) _requireMinted(tokenId);
    }

    /// @dev Reverts ERC721NonexistentToken unless 1 <= tokenId < `_nextTokenId` (nothing burns).
    function _requireMinted(uint256 tokenId) private view {
        if (tokenId == 0 || tokenId >= _nextTokenId) revert ERC721NonexistentToken(tokenId);
    }

    /// @dev The index of the drop holding `tokenId`, if any: the last drop starting at or below it (drops are
    /// appended in id order), if it also ends at or above it.
    function _findDrop(uint256 tokenId) private view returns (bool found, uint256 index) {
        uint256 high = _drops.length;
        if (high == 0 || _drops[0].firstTokenId > tokenId) return (false, 0);
        // Invariant: drop `low` starts at or below tokenId, every drop from `high` on starts above it.
        uint256 low = 0;
        while (high - low > 1) {
            uint256 mid = (low + high) / 2;
            if (_drops[mid].firstTokenId <= tokenId) low = mid;
            else high = mid;
        }
        return (_drops[low].lastTokenId >= tokenId, low);
    }

    /// @dev The URI of an existing token whose digest (zero for a never-evolved drop token) was just read.
    function _uri(uint256 tokenId, bytes32 digest) private view returns (string memory uri) {
        if (digest != bytes32(0)) {
            uri = "ipfs://bafkreiXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
            _writeBase32Digest(uri, digest);
            return uri;
        }
        // An existing token without a digest was minted by mintDrop and never evolved: it has a drop.
        (, uint256 index) = _findDrop(tokenId);
        uri = "ipfs://bafybeiXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
        _writeBase32Digest(uri, _drops[index].folderDigest);
        return string.concat(uri, "/", Strings.toString(tokenId), ".json");
    }

    /// @dev Writes the base32 of a CIDv1's sha2-256 `digest` into characters 14..65 of `uri`, which starts with
    /// "ipfs://bafkrei" or "ipfs://bafybei" (the prefixes of 0x01 0x55 0x12 0x20 and 0x01 0x70 0x12 0x20).
    function _writeBase32Digest(string memory uri, bytes32 digest) private pure {
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

    /// @dev Where a token's 24-bit lane lives: the anchor token's aux word and the bit offset in it.
    function _lane(uint256 tokenId) private pure returns (uint256 anchor, uint256 shift) {
        unchecked {
            uint256 index = (tokenId - 1) % _TOKENS_PER_ANCHOR; // tokenId >= 1 is checked by the caller
            anchor = tokenId - index;
            shift = index * _LANE_BITS;
        }
    }
}
