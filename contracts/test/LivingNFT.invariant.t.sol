// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {LivingNFT} from "../src/LivingNFT.sol";
import {Fixture} from "./utils/Fixture.sol";
import {Test} from "./utils/Test.sol";

/// @dev Drives LivingNFT with random mint / mintBatch / mintDrop / transfer / approve / evolve / evolveBatch / freeze
/// calls and keeps a model of every token (owner, approval, version, frozen flag, digest, drop). Each call predicts its
/// outcome from the model, including the exact custom error of a call that must fail; a wrong prediction
/// reverts, which the invariant run reports (fail_on_revert).
contract LivingNFTHandler is Test {
    LivingNFT internal immutable nft;
    address internal immutable minter;
    address internal immutable evolver;
    address internal immutable admin;
    address[4] internal actors;

    uint256 internal constant MAX_TOKENS = 24;
    uint256 internal constant PACKED_OWNERS_SLOT = 2;

    uint256 public count;
    mapping(uint256 => address) public ownerOf;
    mapping(uint256 => address) public approved;
    mapping(uint256 => uint256) public version;
    mapping(uint256 => bool) public frozen;
    mapping(uint256 => bytes32) public digest; // zero for a drop token until its first evolution
    mapping(uint256 => bytes32) public folder; // a drop token's folder digest, zero otherwise
    mapping(uint256 => uint256) public dropFirst;
    mapping(uint256 => uint256) public dropLast;
    mapping(address => mapping(address => bool)) public operator;
    mapping(address => uint256) public balance;
    uint256 public failedAsPredicted;

    constructor(LivingNFT nft_, address minter_, address evolver_, address admin_, address[4] memory actors_) {
        (nft, minter, evolver, admin, actors) = (nft_, minter_, evolver_, admin_, actors_);
    }

    function actor(uint256 seed) public view returns (address) {
        return actors[seed % actors.length];
    }

    function _token(uint256 seed) internal view returns (uint256) {
        return 1 + (seed % count);
    }

    function _expectFailure(bool ok, bytes memory err, bytes memory predicted) internal {
        require(!ok, "the call succeeded but the model predicted a revert");
        if (keccak256(err) != keccak256(predicted)) revert("the call reverted with another error than predicted");
        failedAsPredicted++;
    }

    // ------------------------------------------------------------------ actions

    function mint(uint256 toSeed, bytes32 newDigest) external {
        if (count >= MAX_TOKENS) return;
        if (newDigest == bytes32(0)) newDigest = bytes32(uint256(1));
        address to = actor(toSeed);
        vm.prank(minter);
        uint256 id = nft.mint(to, newDigest);
        require(id == count + 1, "ids are sequential");
        count = id;
        (ownerOf[id], digest[id]) = (to, newDigest);
        balance[to]++;
    }

    /// A batch of 1-7 tokens: most of its tokens own no slot of their own (their owner is read from below),
    /// so transfers, approvals and freezes of them and of their neighbours exercise the lazy lookup.
    function mintBatch(uint256 toSeed, uint8 size, bytes32 seed) external {
        if (count >= MAX_TOKENS) return;
        uint256 n = 1 + (size % 7);
        if (count + n > MAX_TOKENS) n = MAX_TOKENS - count;
        address to = actor(toSeed);
        bytes32[] memory digests = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) {
            digests[i] = keccak256(abi.encode(seed, i));
        }
        vm.prank(minter);
        uint256 first = nft.mintBatch(to, digests);
        require(first == count + 1, "batch ids follow the last id");
        for (uint256 i = 0; i < n; i++) {
            (ownerOf[first + i], digest[first + i]) = (to, digests[i]);
        }
        count += n;
        balance[to] += n;
    }

    /// A drop of 1-7 tokens: no digest stored, the folder recorded once; sometimes sent with a first id that is
    /// not the next one (a folder built for other ids), which must be refused with nothing minted.
    function mintDrop(uint256 toSeed, uint8 size, bytes32 seed, uint8 stale) external {
        if (count >= MAX_TOKENS) return;
        uint256 n = 1 + (size % 7);
        if (count + n > MAX_TOKENS) n = MAX_TOKENS - count;
        address to = actor(toSeed);
        bytes32[] memory digests = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) {
            digests[i] = keccak256(abi.encode(seed, "file", i));
        }
        bytes32 folderDigest = keccak256(abi.encode(seed, "folder"));
        uint256 first = count + 1;
        if (stale % 8 == 0) first = count; // an id taken (or 0)
        if (stale % 8 == 1) first = count + 2; // an id not next
        vm.prank(minter);
        bytes memory call = abi.encodeCall(nft.mintDrop, (to, first, folderDigest, digests));
        (bool ok, bytes memory err) = address(nft).call(call);
        if (first != count + 1) {
            return _expectFailure(
                ok, err, abi.encodeWithSelector(LivingNFT.UnexpectedFirstTokenId.selector, count + 1, first)
            );
        }
        require(ok, "a drop the model allows reverted");
        for (uint256 i = 0; i < n; i++) {
            (ownerOf[first + i], folder[first + i]) = (to, folderDigest);
            (dropFirst[first + i], dropLast[first + i]) = (first, first + n - 1);
        }
        count += n;
        balance[to] += n;
    }

    function transfer(uint256 idSeed, uint256 bySeed, uint256 toSeed, bool safe) external {
        if (count == 0) return;
        uint256 id = _token(idSeed);
        (address by, address to, address from) = (actor(bySeed), actor(toSeed), ownerOf[id]);
        bool allowed = by == from || approved[id] == by || operator[from][by];
        bytes memory predicted = abi.encodeWithSelector(IERC721Errors.ERC721InsufficientApproval.selector, by, id);
        vm.prank(by);
        (bool ok, bytes memory err) = address(nft)
            .call(
                safe
                    ? abi.encodeWithSignature("safeTransferFrom(address,address,uint256)", from, to, id)
                    : abi.encodeWithSignature("transferFrom(address,address,uint256)", from, to, id)
            );
        if (!allowed) return _expectFailure(ok, err, predicted);
        require(ok, "an allowed transfer reverted");
        balance[from]--;
        balance[to]++;
        (ownerOf[id], approved[id]) = (to, address(0));
    }

    function approve(uint256 idSeed, uint256 bySeed, uint256 toSeed) external {
        if (count == 0) return;
        uint256 id = _token(idSeed);
        (address by, address to) = (actor(bySeed), actor(toSeed));
        bool allowed = by == ownerOf[id] || operator[ownerOf[id]][by];
        bytes memory predicted = abi.encodeWithSelector(IERC721Errors.ERC721InvalidApprover.selector, by);
        vm.prank(by);
        (bool ok, bytes memory err) = address(nft).call(abi.encodeCall(nft.approve, (to, id)));
        if (!allowed) return _expectFailure(ok, err, predicted);
        require(ok, "an allowed approve reverted");
        approved[id] = to;
    }

    function setApprovalForAll(uint256 bySeed, uint256 operatorSeed, bool on) external {
        (address by, address op) = (actor(bySeed), actor(operatorSeed));
        vm.prank(by);
        nft.setApprovalForAll(op, on);
        operator[by][op] = on;
    }

    function evolve(uint256 idSeed, bytes32 newDigest, uint256 staleBy) external {
        if (count == 0) return;
        uint256 id = _token(idSeed);
        if (newDigest == bytes32(0)) newDigest = bytes32(uint256(2));
        // Mostly the right expected version; sometimes one that is off (behind or ahead).
        uint256 expected = staleBy % 4 == 0 ? version[id] + 1 + (staleBy % 3) : version[id];
        if (staleBy % 4 == 1 && version[id] > 0) expected = version[id] - 1;
        bytes memory predicted = _predictSet(id, expected, version[id]);
        vm.prank(evolver);
        (bool ok, bytes memory err) = address(nft).call(abi.encodeCall(nft.evolve, (id, newDigest, expected)));
        if (predicted.length != 0) return _expectFailure(ok, err, predicted);
        require(ok, "an evolve the model allows reverted");
        version[id]++;
        digest[id] = newDigest;
    }

    function evolveBatch(uint256[6] calldata seeds, uint8 size, uint8 staleAt) external {
        if (count == 0) return;
        uint256 n = 1 + (size % 6);
        uint256[] memory ids = new uint256[](n);
        bytes32[] memory digests = new bytes32[](n);
        uint256[] memory expected = new uint256[](n);
        uint256[] memory after_ = new uint256[](count + 1); // the model's version as the batch goes on
        for (uint256 t = 1; t <= count; t++) {
            after_[t] = version[t];
        }
        bytes memory predicted;
        for (uint256 i = 0; i < n; i++) {
            ids[i] = _token(seeds[i]);
            digests[i] = keccak256(abi.encode(seeds[i], i));
            expected[i] = after_[ids[i]];
            if (staleAt < 32 && staleAt % n == i) expected[i] += 1; // one stale entry in some batches
            if (predicted.length == 0) {
                predicted = _predictSet(ids[i], expected[i], after_[ids[i]]);
                if (predicted.length == 0) {
                    // mirrors the contract: a repeated id builds on its own change earlier in the batch
                    after_[ids[i]] = expected[i] + 1;
                }
            }
        }
        vm.prank(evolver);
        (bool ok, bytes memory err) = address(nft).call(abi.encodeCall(nft.evolveBatch, (ids, digests, expected)));
        if (predicted.length != 0) return _expectFailure(ok, err, predicted);
        require(ok, "a batch the model allows reverted");
        for (uint256 i = 0; i < n; i++) {
            version[ids[i]] = after_[ids[i]];
            digest[ids[i]] = digests[i];
        }
    }

    function freeze(uint256 idSeed, uint256 bySeed) external {
        if (count == 0) return;
        uint256 id = _token(idSeed);
        address by = actor(bySeed);
        bytes memory predicted;
        if (by != ownerOf[id] && by != admin) {
            predicted = abi.encodeWithSelector(LivingNFT.NotOwnerOrAdmin.selector, by, id);
        } else if (frozen[id]) {
            predicted = abi.encodeWithSelector(LivingNFT.TokenFrozen.selector, id);
        }
        vm.prank(by);
        (bool ok, bytes memory err) = address(nft).call(abi.encodeCall(nft.freeze, (id)));
        if (predicted.length != 0) return _expectFailure(ok, err, predicted);
        require(ok, "a freeze the model allows reverted");
        frozen[id] = true;
    }

    /// Puts a token's version next to MAX_VERSION straight in storage (its own 24-bit lane only), so that
    /// sequences reach the overflow and the top bits of the packed word.
    function jumpNearMaxVersion(uint256 idSeed, uint8 below) external {
        if (count == 0 || below % 8 != 0) return; // rarely: most sequences should evolve normally
        uint256 id = _token(idSeed);
        uint256 target = nft.MAX_VERSION() - ((below >> 3) % 3);
        uint256 index = (id - 1) % 4;
        bytes32 slot = keccak256(abi.encode(id - index, PACKED_OWNERS_SLOT));
        uint256 shift = 160 + 24 * index;
        uint256 lane = target | (frozen[id] ? 1 << 23 : 0);
        uint256 word = uint256(vm.load(address(nft), slot));
        vm.store(address(nft), slot, bytes32((word & ~(uint256(0xffffff) << shift)) | (lane << shift)));
        version[id] = target;
    }

    /// The revert the contract must give when setting `id`, now at `current`, from `expected` (empty: it
    /// must succeed).
    function _predictSet(uint256 id, uint256 expected, uint256 current) internal view returns (bytes memory) {
        if (frozen[id]) return abi.encodeWithSelector(LivingNFT.TokenFrozen.selector, id);
        if (expected != current) {
            return abi.encodeWithSelector(LivingNFT.VersionMismatch.selector, id, expected, current);
        }
        if (current == nft.MAX_VERSION()) return abi.encodeWithSelector(LivingNFT.VersionOverflow.selector, id);
        return "";
    }
}

/// @dev After every call of every random sequence, each token's owner, approval, version, frozen flag, digest,
/// tokenURI (its own CID, or its drop folder's file until its first evolution) and drop are exactly the model's:
/// no action on one token disturbs another's, in particular not the three others that share its packed owner
/// slot (four 24-bit lanes in the top 96 bits of an anchor's slot).
contract LivingNFTInvariantTest is Fixture {
    LivingNFTHandler internal handler;
    address[4] internal actors;

    function setUp() public override {
        super.setUp();
        actors = [artist, collector, stranger, admin];
        handler = new LivingNFTHandler(nft, minter, evolver, admin, actors);
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// One invariant function (each one is a campaign of its own: 256 runs x 32 calls) checking it all.
    function invariant_modelHolds() public view {
        _everyTokenKeepsItsOwnState();
        _balancesAndOperators();
        _unmintedLanesStayEmpty();
    }

    function _everyTokenKeepsItsOwnState() internal view {
        uint256 count = handler.count();
        assertEq(nft.totalSupply(), count, "totalSupply");
        for (uint256 id = 1; id <= count; id++) {
            assertEq(nft.ownerOf(id), handler.ownerOf(id), string.concat("owner of ", _str(id)));
            assertEq(nft.getApproved(id), handler.approved(id), string.concat("approval of ", _str(id)));
            assertEq(nft.metadataVersion(id), handler.version(id), string.concat("version of ", _str(id)));
            assertEq(nft.isFrozen(id), handler.frozen(id), string.concat("frozen flag of ", _str(id)));
            assertEq(nft.metadataDigest(id), handler.digest(id), string.concat("digest of ", _str(id)));
            bytes32 own = handler.digest(id);
            string memory uri = own != bytes32(0) ? referenceURI(own) : referenceFolderURI(handler.folder(id), id);
            assertEq(nft.tokenURI(id), uri, string.concat("tokenURI of ", _str(id)));
            (uint256 first, uint256 last, bytes32 folder) = nft.dropOf(id);
            assertEq(first, handler.dropFirst(id), string.concat("drop's first id of ", _str(id)));
            assertEq(last, handler.dropLast(id), string.concat("drop's last id of ", _str(id)));
            assertEq(folder, handler.folder(id), string.concat("drop's folder of ", _str(id)));
        }
    }

    function _balancesAndOperators() internal view {
        uint256 total;
        for (uint256 i = 0; i < actors.length; i++) {
            assertEq(nft.balanceOf(actors[i]), handler.balance(actors[i]), "balance");
            total += nft.balanceOf(actors[i]);
            for (uint256 j = 0; j < actors.length; j++) {
                assertEq(nft.isApprovedForAll(actors[i], actors[j]), handler.operator(actors[i], actors[j]), "operator");
            }
        }
        assertEq(total, handler.count(), "every token is held by one actor");
    }

    /// The packed word of each anchor holds nothing beyond its tokens' lanes: lanes of ids not minted yet
    /// stay zero (a later mint starts at version 0, unfrozen).
    function _unmintedLanesStayEmpty() internal view {
        uint256 count = handler.count();
        uint256 lastAnchor = count == 0 ? 0 : count - ((count - 1) % 4);
        if (lastAnchor == 0) return;
        for (uint256 id = count + 1; id < lastAnchor + 4; id++) {
            (bytes32 slot, uint256 shift) = laneOf(id);
            assertEq((uint256(vm.load(address(nft), slot)) >> shift) & 0xffffff, 0, "lane of an unminted id");
        }
    }
}
