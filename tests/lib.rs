//! Helpers shared by the cross-crate integration tests in this folder.
