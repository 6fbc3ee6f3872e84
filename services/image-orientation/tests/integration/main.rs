//! The service's integration tests, one module each, in one test binary: they share its
//! dependencies' code, compiled and linked once rather than once a file.

mod baseline;
mod http;
mod parity;
