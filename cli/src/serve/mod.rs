//! `shoal serve`: the HTTP sidecar. (Being built.)

use crate::error::CliError;
use crate::net::NetArgs;

/// `shoal serve` flags.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `shoal serve`.
pub async fn run(_net: &NetArgs, _args: Args) -> Result<(), CliError> {
    Err(CliError::runtime("shoal serve is not built yet"))
}
