//! `cargo xtask lab up|down|status`: the three-namespace lab (`gw`, `relay`, `int`; see
//! `tollgate-netlab`).

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use tollgate_netlab::LabSpec;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
    #[command(flatten)]
    pub opts: LabOpts,
}

#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum Action {
    /// Create the namespaces, veth pairs and addresses (idempotent).
    Up,
    /// Remove everything `up` created.
    Down,
    /// Show what exists.
    Status,
}

/// Names and addresses of the lab.
#[derive(clap::Args, Debug, Clone)]
pub struct LabOpts {
    /// Namespace name prefix: namespaces are PREFIX-gw, PREFIX-relay, PREFIX-int.
    /// Without it they are gw, relay and int.
    #[arg(long, global = true)]
    pub prefix: Option<String>,
    /// Gateway-side subnet as A.B.C.0/N: the relay gets .1, the gateway .2.
    #[arg(long, global = true, default_value = "10.201.1.0/24")]
    pub ext_subnet: String,
    /// Internal-side subnet as A.B.C.0/N: the relay gets .1, the internal endpoint .2.
    #[arg(long, global = true, default_value = "10.201.2.0/24")]
    pub int_subnet: String,
}

fn parse_subnet(s: &str) -> anyhow::Result<(Ipv4Addr, Ipv4Addr, u8)> {
    let (net, len) = s.split_once('/').context("subnet must be A.B.C.D/N")?;
    let net: Ipv4Addr = net.parse().with_context(|| format!("bad address in {s}"))?;
    let len: u8 = len
        .parse()
        .with_context(|| format!("bad prefix length in {s}"))?;
    if !(8..=30).contains(&len) {
        bail!("prefix length of {s} must be 8..=30");
    }
    let base = u32::from(net) & (u32::MAX << (32 - len));
    Ok((Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2), len))
}

impl LabOpts {
    pub fn spec(&self) -> anyhow::Result<LabSpec> {
        let mut spec = match &self.prefix {
            Some(p) => LabSpec::with_prefix(p),
            None => LabSpec::default(),
        };
        let (r, p, l) = parse_subnet(&self.ext_subnet)?;
        spec.ext_net.relay = r;
        spec.ext_net.peer = p;
        spec.ext_net.prefix = l;
        let (r, p, l) = parse_subnet(&self.int_subnet)?;
        spec.int_net.relay = r;
        spec.int_net.peer = p;
        spec.int_net.prefix = l;
        Ok(spec)
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let spec = args.opts.spec()?;
    match args.action {
        Action::Up => {
            let steps = spec.up()?;
            for s in &steps {
                println!("{s}");
            }
            let created = steps
                .iter()
                .filter(|s| matches!(s, tollgate_netlab::Step::Created(_)))
                .count();
            println!(
                "lab up: {created} pieces created, {} already present",
                steps.len() - created
            );
            print!("{}", spec.status()?);
        }
        Action::Down => {
            let removed = spec.down()?;
            if removed.is_empty() {
                println!("lab down: nothing to remove");
            } else {
                println!("lab down: removed namespaces {}", removed.join(", "));
            }
        }
        Action::Status => print!("{}", spec.status()?),
    }
    Ok(())
}
