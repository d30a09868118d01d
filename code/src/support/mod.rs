//! What every chapter leans on: the batch type, errors, tensor files, PyTorch fixtures,
//! comparison with PyTorch's tolerances, and a random initialiser that Python reproduces
//! bit for bit.

pub mod batch;
pub mod compare;
pub mod error;
pub mod fixtures;
pub mod init;
pub mod io;
