//! `shoal register`: registrations on behalf of apps that do not link
//! shoal, kept alive for as long as the command runs.
//!
//! It registers each app for `--ttl` and refreshes it every third of
//! that. On SIGINT or SIGTERM it deregisters each one (other nodes see
//! `offline`, reason `deregistered`) and shuts its node down with a
//! goodbye. Killed outright, it sends nothing more: other nodes drop its
//! node after the node timeout (2.6 s by default) and its registrations
//! with it (reason `ownerGone`).
//!
//! With `--check tcp` an app is registered only while its port accepts a
//! TCP connection (see [`check`]): after `--check-failures` failed checks
//! in a row it is deregistered, and the first check that passes registers
//! it again.
//!
//! Everything it does is a JSON line on stdout (`start`, `registered`,
//! `check`, `deregistered`), for scripts and tests to follow; a failure
//! goes to stderr and exits 1, after deregistering what it can.

pub mod check;
pub mod spec;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Map, Value};
use shoal::registry::{Registry, RegistryError, RegistryLimits};
use shoal::Registration;

use crate::error::CliError;
use crate::net::{self, NetArgs};
use crate::output::json_line;
use crate::signals::Signals;
use check::{Check, Outcome};
use spec::{AppSpec, KeyValue};

const AFTER_HELP: &str = "\
Examples:
  shoal register myapp@1.0.0:8080
  shoal register web@2.1.0:80,admin@2.1.0:8081 --meta zone=eu --meta weight=3
  shoal register myapp@1.0.0:8080 --check tcp --ttl 10s
  shoal --loopback --port 47700 register myapp@1.0.0:8080 --host 127.0.0.1

It prints one JSON line per thing it does (start, registered, check,
deregistered). ^C or SIGTERM deregisters every app, then exits 0.";

/// The apps of one `NAME@VERSION:PORT[,…]` argument.
#[derive(Debug, Clone)]
pub struct AppList(Vec<AppSpec>);

/// `shoal register` flags.
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The apps to register: NAME@VERSION:PORT, comma-separated or repeated
    #[arg(
        value_name = "NAME@VERSION:PORT[,...]",
        required = true,
        value_parser = |s: &str| spec::parse_apps(s).map(AppList)
    )]
    apps: Vec<AppList>,
    /// The host the apps are served at, as clients should reach them
    /// [default: this host's address towards the cluster, or else its name]
    #[arg(long, value_name = "HOST", value_parser = parse_host)]
    host: Option<String>,
    /// Metadata for every app, repeatable; VALUE is JSON if it parses as
    /// JSON (3, true, {"a":1}), else a string
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<KeyValue>,
    /// Each registration's time to live unless refreshed (this command
    /// refreshes every third of it): seconds, or a duration such as 30s or
    /// 2m, 1 s to 24 h. If this command is killed, its registrations go
    /// sooner, at the node timeout
    #[arg(long, value_name = "TTL", default_value = "30s", value_parser = parse_ttl)]
    ttl: Duration,
    /// How to check each app before registering it: none, or tcp (a TCP
    /// connect to the registered host and port, as a client elsewhere would
    /// make; registered only while it succeeds)
    #[arg(long, value_enum, default_value_t = Check::None)]
    check: Check,
    /// Time between checks, in seconds or as a duration (100ms to 1h)
    #[arg(long, value_name = "INTERVAL", default_value = "2s", value_parser = parse_interval)]
    check_interval: Duration,
    /// Failed checks in a row that deregister an app (one passing check
    /// registers it again)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    check_failures: u32,
}

/// `30` (seconds) or a humantime duration (`30s`, `2m`, `1h 30m`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e}")),
    }
}

/// A time to live: 1 s to 24 h (the registry takes 1 ms to 24 h; under a
/// second, refreshing every third of it would flood the LAN with deltas).
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_duration(s)?;
    if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(86_400) {
        return Err(format!("{s:?} is not between 1s and 24h"));
    }
    Ok(ttl)
}

/// A check interval: 100 ms to 1 h.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let interval = parse_duration(s)?;
    if interval < Duration::from_millis(100) || interval > Duration::from_secs(3_600) {
        return Err(format!("{s:?} is not between 100ms and 1h"));
    }
    Ok(interval)
}

/// A host part, checked by the registry's rules (no '/', no space).
fn parse_host(s: &str) -> Result<String, String> {
    Registration::builder("n", "1", s, 1)
        .build()
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// The host to register at when `--host` is not given: the address this
/// host sends from towards the cluster (what the other nodes hear it
/// at), or, with no route there, its host name.
fn default_host(net: &NetArgs) -> Result<String, CliError> {
    let destination = net.builder()?.build()?.destination();
    if let Some(ip) = net::local_address(destination) {
        return Ok(ip.to_string());
    }
    let name = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_host(&name).map_err(|e| {
        CliError::usage(format!(
            "no route to {destination}, and the host name cannot stand in ({e}): give --host"
        ))
    })
}

/// One app and where it stands.
struct App {
    spec: AppSpec,
    /// What it is registered as now (`Some` while registered).
    registered: Option<Registration>,
    /// Failed checks in a row.
    failures: u32,
    /// The last check's verdict, to print only changes.
    last_check: Option<bool>,
}

/// What `run` needs to (re-)register an app.
struct Context {
    registry: Registry,
    host: String,
    meta: Map<String, Value>,
    ttl: Duration,
}

impl Context {
    /// A fresh registration of `spec` (a fresh `meta.registered` too: it
    /// says when this registration began).
    fn registration(&self, spec: &AppSpec) -> Result<Registration, CliError> {
        Registration::builder(&spec.name, &spec.version, &self.host, spec.port)
            .meta_object(self.meta.clone())
            .build()
            .map_err(CliError::usage)
    }

    /// Registers `app` and says so.
    async fn register(&self, app: &mut App, reason: &str) -> Result<(), CliError> {
        let registration = self.registration(&app.spec)?;
        self.registry
            .register(registration.clone(), self.ttl)
            .await
            .map_err(|e| CliError::runtime(format!("cannot register {}: {e}", app.spec)))?;
        json_line(
            "registered",
            json!({
                "registration": registration,
                "ttl_ms": self.ttl.as_millis() as u64,
                "reason": reason,
            }),
        )?;
        app.registered = Some(registration);
        Ok(())
    }

    /// Deregisters `app` if it is registered, and says so.
    async fn deregister(&self, app: &mut App, reason: &str) -> Result<(), CliError> {
        let Some(registration) = app.registered.take() else {
            return Ok(());
        };
        if let Err(e) = self.registry.deregister(registration.id()).await {
            // Not registered here any more (it expired while we were
            // stalled): gone either way.
            tracing::debug!(id = registration.id(), error = %e, "deregister");
        }
        json_line(
            "deregistered",
            json!({"registration": registration, "reason": reason}),
        )?;
        Ok(())
    }

    /// Starts the time to live of every registered app again; one that
    /// the registry no longer holds (it expired while this process was
    /// stopped, say) is registered anew.
    async fn refresh(&self, apps: &mut [App]) -> Result<(), CliError> {
        for app in apps.iter_mut() {
            let Some(registration) = &app.registered else {
                continue;
            };
            match self.registry.refresh(registration.id()).await {
                Ok(()) => {}
                Err(shoal::Error::Registry(RegistryError::NotRegistered(_))) => {
                    self.register(app, "expired").await?;
                }
                Err(e) => {
                    return Err(CliError::runtime(format!(
                        "cannot refresh {}: {e}",
                        app.spec
                    )))
                }
            }
        }
        Ok(())
    }

    /// Acts on one check's outcome.
    async fn checked(
        &self,
        app: &mut App,
        outcome: Outcome,
        failures: u32,
    ) -> Result<(), CliError> {
        let ok = outcome.result.is_ok();
        app.failures = if ok {
            0
        } else {
            app.failures.saturating_add(1)
        };
        if app.last_check != Some(ok) {
            app.last_check = Some(ok);
            let target = format!("{}:{}", self.host, app.spec.port);
            json_line(
                "check",
                json!({
                    "app": app.spec.to_string(),
                    "target": target,
                    "ok": ok,
                    "error": outcome.result.err(),
                }),
            )?;
        }
        if ok && app.registered.is_none() {
            self.register(app, "check passed").await?;
        } else if !ok && app.failures >= failures && app.registered.is_some() {
            self.deregister(app, "check failed").await?;
        }
        Ok(())
    }
}

/// Runs `shoal register`.
pub async fn run(net: &NetArgs, mut args: Args) -> Result<(), CliError> {
    let mut signals = Signals::install()?;
    let host = match args.host.take() {
        Some(host) => host,
        None => default_host(net)?,
    };
    let mut meta = Map::new();
    for kv in std::mem::take(&mut args.meta) {
        meta.insert(kv.key, kv.value);
    }
    // Refused by the registry at every attempt otherwise: say so now.
    let meta_bytes = serde_json::to_vec(&meta).map_or(0, |v| v.len());
    let max = RegistryLimits::default().meta_bytes;
    if meta_bytes > max {
        return Err(CliError::usage(format!(
            "--meta is {meta_bytes} bytes as JSON, over the registry's limit of {max}"
        )));
    }
    let mut seen = HashSet::new();
    let mut apps: Vec<App> = std::mem::take(&mut args.apps)
        .into_iter()
        .flat_map(|list| list.0)
        .filter(|spec| seen.insert(spec.clone()))
        .map(|spec| App {
            spec,
            registered: None,
            failures: 0,
            last_check: None,
        })
        .collect();
    if apps.len() > RegistryLimits::default().per_owner {
        return Err(CliError::usage(format!(
            "{} apps: one node registers at most {}",
            apps.len(),
            RegistryLimits::default().per_owner
        )));
    }

    let node = net.start(|b| net.bystander(b)).await?;
    let cx = Context {
        registry: node.registry(),
        host,
        meta,
        ttl: args.ttl,
    };
    json_line(
        "start",
        json!({
            "node": node.id().as_str(),
            "host": cx.host,
            "ttl_ms": cx.ttl.as_millis() as u64,
            "check": format!("{:?}", args.check).to_lowercase(),
        }),
    )?;
    let result = serve(&cx, &mut apps, &mut signals, &args).await;
    // Whatever ended the loop, leave cleanly: others see `deregistered`
    // for each app, then our goodbye.
    let mut cleanup = Ok(());
    for app in &mut apps {
        if let Err(e) = cx.deregister(app, "stopped").await {
            cleanup = Err(e);
        }
    }
    node.shutdown().await;
    result.and(cleanup)
}

/// Registers, refreshes and checks until SIGINT or SIGTERM.
async fn serve(
    cx: &Context,
    apps: &mut [App],
    signals: &mut Signals,
    args: &Args,
) -> Result<(), CliError> {
    let (_checks, mut outcomes) = match args.check {
        Check::None => {
            for app in apps.iter_mut() {
                cx.register(app, "started").await?;
            }
            (None, None)
        }
        Check::Tcp => {
            let targets = apps
                .iter()
                .map(|a| (cx.host.clone(), a.spec.port))
                .collect();
            let (tasks, rx) = check::spawn(targets, args.check_interval);
            (Some(tasks), Some(rx))
        }
    };
    let mut refresh = tokio::time::interval(cx.ttl / 3);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await; // the first tick is now: nothing to refresh yet
    loop {
        tokio::select! {
            stop = signals.recv() => {
                tracing::debug!(?stop, "stopping");
                return Ok(());
            }
            _ = refresh.tick() => cx.refresh(apps).await?,
            Some(outcome) = async { outcomes.as_mut()?.recv().await } => {
                let app = &mut apps[outcome.index];
                cx.checked(app, outcome, args.check_failures).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_seconds_or_humantime_within_bounds() {
        assert_eq!(parse_ttl("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_ttl("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_ttl("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("500ms").is_err());
        assert!(parse_ttl("2d").is_err());
        assert!(parse_ttl("soon").is_err());
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_interval("10ms").is_err());
    }

    #[test]
    fn hosts_follow_the_registry_rules() {
        assert_eq!(parse_host("10.0.0.5").unwrap(), "10.0.0.5");
        assert_eq!(parse_host("db.example").unwrap(), "db.example");
        assert!(parse_host("a/b").is_err());
        assert!(parse_host("a b").is_err());
        assert!(parse_host("").is_err());
    }

    #[test]
    fn the_default_host_on_loopback_is_loopback() {
        let net = NetArgs {
            loopback: true,
            port: Some(47_860),
            ..NetArgs::default()
        };
        assert_eq!(default_host(&net).unwrap(), "127.0.0.1");
    }
}
