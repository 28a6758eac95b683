//! Implementations of the ports: the embedded store and the local keyring
//! for one box.

pub mod embedded;
pub mod local_keyring;
