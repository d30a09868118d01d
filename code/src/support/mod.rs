//! What every chapter leans on: the batch type, errors, tensor files, PyTorch fixtures,
//! comparison with PyTorch's tolerances, a random initialiser that Python reproduces
//! bit for bit, and the examples' printing ([`show`]).

pub mod aligned;
pub mod batch;
pub mod compare;
pub mod error;
pub mod fixtures;
pub mod init;
pub mod io;
pub mod show;
