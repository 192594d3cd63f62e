//! `shoal send` and `shoal listen`: messages on named channels. (Being built.)

use crate::error::CliError;
use crate::net::NetArgs;

/// `shoal send` flags.
#[derive(clap::Args, Debug)]
pub struct SendArgs {}

/// `shoal listen` flags.
#[derive(clap::Args, Debug)]
pub struct ListenArgs {}

/// Runs `shoal send`.
pub async fn send(_net: &NetArgs, _args: SendArgs) -> Result<(), CliError> {
    Err(CliError::runtime("shoal send is not built yet"))
}

/// Runs `shoal listen`.
pub async fn listen(_net: &NetArgs, _args: ListenArgs) -> Result<(), CliError> {
    Err(CliError::runtime("shoal listen is not built yet"))
}
