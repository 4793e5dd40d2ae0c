// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @dev OpenZeppelin's own ERC721 (5.7.0), with an open mint: the reference PackedERC721 must match.
contract OZToken is ERC721 {
    constructor() ERC721("Reference", "REF") {}

    function mint(address to, uint256 tokenId) external {
        _mint(to, tokenId);
    }

    /// @dev `count` tokens from `firstId` on, one `_mint` each: what a batch mint must look like from outside.
    function mintMany(address to, uint256 firstId, uint256 count) external {
        for (uint256 i = 0; i < count; i++) {
            _mint(to, firstId + i);
        }
    }
}
