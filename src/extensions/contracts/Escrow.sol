// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

interface IERC20 {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title Escrow
/// @notice Kwil's test escrow: a deposit pulls ERC-20 tokens and emits `Credit`, which the
/// `eth_deposits` listener turns into a `credit_account` resolution. Both event parameters are
/// NOT indexed, exactly as in Kwil, so the listener filters on topic0 only.
contract Escrow {
    IERC20 public immutable token;

    event Credit(address _from, uint256 _amount);

    constructor(address token_) {
        token = IERC20(token_);
    }

    /// @notice Kwil's deposit: pull `amount` from the sender (after `approve`) and credit it.
    function deposit(uint256 amount) external {
        require(token.transferFrom(msg.sender, address(this), amount), "Escrow: transfer failed");
        emit Credit(msg.sender, amount);
    }

    /// @notice `count` deposits of `amount` in one transaction: pulls the total once, then emits
    /// one `Credit` per deposit. Equal credits in one transaction are distinct logs (log index),
    /// which is the case Kwil v0.8 collapsed; also a cheap way to make many logs for benchmarks.
    function depositMany(uint256 amount, uint256 count) external {
        require(token.transferFrom(msg.sender, address(this), amount * count), "Escrow: transfer failed");
        for (uint256 i = 0; i < count; ++i) {
            emit Credit(msg.sender, amount);
        }
    }

    /// @notice One deposit per entry of `amounts`, in order, in one transaction.
    function depositBatch(uint256[] calldata amounts) external {
        uint256 total = 0;
        for (uint256 i = 0; i < amounts.length; ++i) {
            total += amounts[i];
        }
        require(token.transferFrom(msg.sender, address(this), total), "Escrow: transfer failed");
        for (uint256 i = 0; i < amounts.length; ++i) {
            emit Credit(msg.sender, amounts[i]);
        }
    }
}
