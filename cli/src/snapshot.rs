//! `shoal nodes` and `shoal registrations`: snapshots. (Being built.)

use crate::error::CliError;
use crate::net::NetArgs;

/// `shoal nodes` flags.
#[derive(clap::Args, Debug)]
pub struct NodesArgs {}

/// `shoal registrations` flags.
#[derive(clap::Args, Debug)]
pub struct RegistrationsArgs {}

/// Runs `shoal nodes`.
pub async fn nodes(_net: &NetArgs, _args: NodesArgs) -> Result<(), CliError> {
    Err(CliError::runtime("shoal nodes is not built yet"))
}

/// Runs `shoal registrations`.
pub async fn registrations(_net: &NetArgs, _args: RegistrationsArgs) -> Result<(), CliError> {
    Err(CliError::runtime("shoal registrations is not built yet"))
}
