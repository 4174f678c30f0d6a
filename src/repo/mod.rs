//! Repositories: the folder clients fetch (`metadata/`, `targets/`).

pub mod verify;
