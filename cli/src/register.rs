//! `shoal register`: registrations on behalf of apps that do not link shoal. (Being built.)

use crate::error::CliError;
use crate::net::NetArgs;

/// `shoal register` flags.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `shoal register`.
pub async fn run(_net: &NetArgs, _args: Args) -> Result<(), CliError> {
    Err(CliError::runtime("shoal register is not built yet"))
}
