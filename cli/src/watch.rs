//! `shoal watch`: the LAN, live. (Being built.)

use crate::error::CliError;
use crate::net::NetArgs;

/// `shoal watch` flags.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `shoal watch`.
pub async fn run(_net: &NetArgs, _args: Args) -> Result<(), CliError> {
    Err(CliError::runtime("shoal watch is not built yet"))
}
