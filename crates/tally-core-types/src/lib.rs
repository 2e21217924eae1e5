//! Shared fixed-size types (being written).
