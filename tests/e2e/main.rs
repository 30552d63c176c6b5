//! End-to-end tests: the built `kms-env` binary against a real `moto_server` on loopback, with
//! ciphertexts and parameters made by the AWS CLI and boto3.

mod chroot;
mod common;
mod compat;
mod encoding;
mod exec;
mod failures;
mod faults;
mod files;
mod hardening;
mod init;
mod interop;
mod loads;
mod network;
mod region;
mod rotation;
mod secrets;
mod templates;
mod tls;
mod values;
