//! How an attempt was launched, kept in its journal line so that
//! `submit --resume ID` runs the rest the same way without the flags again.
//!
//! Each attempt records the flags that say where and how its workers ran
//! (`--launcher`, `--image`, the namespace it ran in, ...); a resume takes the
//! last attempt's for every one of them not given on its own command line, and
//! says which it took. A value read back is checked by the flag's own parser:
//! a journal edited by hand gets the error the flag would.

use std::collections::BTreeMap;

use clap::ValueEnum;

use super::{ChannelKind, SubmitArgs, PULL_POLICIES};
use crate::args::{
    parse_count, parse_cpu, parse_dns_label, parse_dns_subdomain, parse_image, parse_memory,
    parse_queue_name, parse_queue_url, parse_threads,
};
use crate::cluster::{LauncherKind, WorkloadKind};

/// The flags kept, by their long names; clap knows each by the same name
/// with `_` for `-` (the fields of [`SubmitArgs`]).
const FLAGS: [&str; 13] = [
    "pods",
    "launcher",
    "channel",
    "queue-url",
    "queue-name",
    "workload",
    "image",
    "image-pull-policy",
    "namespace",
    "cpu",
    "memory",
    "service-account",
    "threads",
];

/// How reports came back: given together or not at all, since the default
/// channel follows from the launcher and a queue's flags exclude each other.
const REPORTS: [&str; 3] = ["channel", "queue-url", "queue-name"];

/// The launcher a flag of [`FLAGS`] does something for, if only one: an
/// attempt keeps only its own launcher's, and a resume on another launcher
/// takes none of the old one's.
fn only_for(flag: &str) -> Option<LauncherKind> {
    match flag {
        "workload" | "image" | "image-pull-policy" | "namespace" | "cpu" | "memory"
        | "service-account" => Some(LauncherKind::Kubernetes),
        "threads" => Some(LauncherKind::Local),
        _ => None,
    }
}

fn name<T: ValueEnum>(value: &T) -> String {
    value
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_string()
}

/// The settings of an attempt run with `args`, `pods` at once (as given or
/// as --within picked them), in `namespace` (the one it resolved: the
/// kubeconfig's when --namespace was not given).
pub fn settings(args: &SubmitArgs, pods: u64, namespace: &str) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    let mut keep = |flag: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            kept.insert(flag.to_string(), value);
        }
    };
    keep("pods", Some(pods.to_string()));
    keep("launcher", Some(name(&args.launcher)));
    keep("channel", args.channel.as_ref().map(name));
    keep("queue-url", args.queue_url.clone());
    keep("queue-name", args.queue_name.clone());
    keep("workload", Some(name(&args.workload)));
    keep("image", Some(args.image.clone()));
    keep("image-pull-policy", Some(args.image_pull_policy.clone()));
    keep("namespace", Some(namespace.to_string()));
    keep("cpu", Some(args.cpu.clone()));
    keep("memory", Some(args.memory.clone()));
    keep("service-account", args.service_account.clone());
    keep("threads", args.threads.map(|t| t.to_string()));
    // Each launcher's own flags only: the others did nothing.
    kept.retain(|flag, _| only_for(flag).is_none_or(|l| l == args.launcher));
    kept
}

/// Sets in `args` each of `kept` whose flag `given` says was not on the
/// command line; returns them as flags (`--image reg/cnd:1`), or why one of
/// them is not valid.
pub fn take(
    args: &mut SubmitArgs,
    kept: &BTreeMap<String, String>,
    given: impl Fn(&str) -> bool,
) -> Result<Vec<String>, String> {
    let given_flag = |flag: &str| given(&flag.replace('-', "_"));
    let launcher_changed = given_flag("launcher")
        && kept
            .get("launcher")
            .is_some_and(|l| *l != name(&args.launcher));
    let reports_given = launcher_changed || REPORTS.iter().any(|f| given_flag(f));
    let mut taken = Vec::new();
    for flag in FLAGS {
        let Some(value) = kept.get(flag) else {
            continue;
        };
        // `launcher` comes before every flag that depends on it, so
        // `args.launcher` is already the one this attempt runs.
        let other_launchers = only_for(flag).is_some_and(|l| l != args.launcher);
        if given_flag(flag) || (REPORTS.contains(&flag) && reports_given) || other_launchers {
            continue;
        }
        let bad = |e: String| format!("its last attempt's --{flag} `{value}`: {e}");
        let enum_value = |what: &str| format!("not a {what}");
        match flag {
            "pods" => args.pods = Some(parse_count(value).map_err(bad)?),
            "launcher" => {
                args.launcher =
                    LauncherKind::from_str(value, false).map_err(|_| bad(enum_value("launcher")))?
            }
            "channel" => {
                args.channel = Some(
                    ChannelKind::from_str(value, false).map_err(|_| bad(enum_value("channel")))?,
                )
            }
            "queue-url" => args.queue_url = Some(parse_queue_url(value).map_err(bad)?),
            "queue-name" => args.queue_name = Some(parse_queue_name(value).map_err(bad)?),
            "workload" => {
                args.workload =
                    WorkloadKind::from_str(value, false).map_err(|_| bad(enum_value("workload")))?
            }
            "image" => args.image = parse_image(value).map_err(bad)?,
            "image-pull-policy" if PULL_POLICIES.contains(&value.as_str()) => {
                args.image_pull_policy = value.clone()
            }
            "image-pull-policy" => {
                return Err(bad(format!("not one of {}", PULL_POLICIES.join(", "))))
            }
            "namespace" => args.namespace = Some(parse_dns_label(value).map_err(bad)?),
            "cpu" => args.cpu = parse_cpu(value).map_err(bad)?,
            "memory" => args.memory = parse_memory(value).map_err(bad)?,
            "service-account" => {
                args.service_account = Some(parse_dns_subdomain(value).map_err(bad)?)
            }
            "threads" => args.threads = Some(parse_threads(value).map_err(bad)?),
            _ => unreachable!("every flag of FLAGS is matched"),
        }
        taken.push(format!("--{flag} {value}"));
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SubmitArgs,
    }

    fn parse(argv: &[&str]) -> (SubmitArgs, clap::ArgMatches) {
        let matches = <Cli as clap::CommandFactory>::command()
            .try_get_matches_from(std::iter::once("submit").chain(argv.iter().copied()))
            .unwrap();
        (Cli::from_arg_matches(&matches).unwrap().args, matches)
    }

    fn resumed(argv: &[&str], kept: &BTreeMap<String, String>) -> (SubmitArgs, Vec<String>) {
        let mut all = vec!["--resume", "5f0c3f7e-2b1d-4c8a-9d3e-6a7b8c9d0e1f"];
        all.extend(argv);
        let (mut args, matches) = parse(&all);
        let given =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let taken = take(&mut args, kept, given).unwrap();
        (args, taken)
    }

    #[test]
    fn a_resume_takes_each_flag_it_is_not_given_and_a_queue_only_with_its_channel() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/cnd-shared";
        let (first, _) = parse(&[
            "-d",
            "30",
            "--pods",
            "4",
            "--image",
            "reg/cnd:1",
            "--queue-url",
            url,
            "--cpu",
            "2",
        ]);
        let kept = settings(&first, 4, "cnd");
        assert_eq!(kept["pods"], "4");
        assert_eq!(kept["launcher"], "kubernetes");
        assert_eq!(kept["image"], "reg/cnd:1");
        assert_eq!(kept["queue-url"], url);
        assert_eq!(kept["namespace"], "cnd");
        assert_eq!(kept["cpu"], "2");
        assert!(
            !kept.contains_key("threads") && !kept.contains_key("channel"),
            "{kept:?}"
        );

        // Nothing given: all of it, said in FLAGS' order.
        let (args, taken) = resumed(&[], &kept);
        assert_eq!(args.image, "reg/cnd:1");
        assert_eq!(args.queue_url.as_deref(), Some(url));
        assert_eq!(args.namespace.as_deref(), Some("cnd"));
        assert_eq!(args.cpu, "2");
        assert_eq!(args.pods, Some(4));
        assert_eq!(taken[..2], ["--pods 4", "--launcher kubernetes"]);
        assert!(taken.contains(&format!("--queue-url {url}")), "{taken:?}");

        // A flag given wins, and is not said as taken.
        let (args, taken) = resumed(&["--image", "reg/cnd:2"], &kept);
        assert_eq!(args.image, "reg/cnd:2");
        assert!(
            !taken.iter().any(|t| t.starts_with("--image ")),
            "{taken:?}"
        );

        // Another queue, or another launcher, brings none of the old reports' flags.
        let (args, _) = resumed(&["--queue-name", "cnd-other"], &kept);
        assert_eq!(
            (args.queue_url, args.queue_name.as_deref()),
            (None, Some("cnd-other"))
        );
        let (args, taken) = resumed(&["--launcher", "local"], &kept);
        assert_eq!(args.queue_url, None);
        assert_eq!(args.launcher, LauncherKind::Local);
        // Nor any of the old launcher's own flags: a local run has no namespace.
        assert_eq!(args.namespace, None);
        assert_eq!(taken, ["--pods 4"]);

        // Back from local to Kubernetes: the local attempt's threads stay behind.
        let (local, _) = parse(&[
            "-d",
            "30",
            "--launcher",
            "local",
            "--threads",
            "3",
            "--pods",
            "2",
        ]);
        let kept = settings(&local, 2, "ignored");
        assert_eq!(kept["threads"], "3");
        assert!(!kept.contains_key("namespace"), "{kept:?}");
        let (args, taken) = resumed(&["--launcher", "kubernetes"], &kept);
        assert_eq!(args.threads, None);
        assert_eq!(taken, ["--pods 2"]);
    }

    #[test]
    fn a_kept_value_a_flag_would_refuse_is_refused_naming_it() {
        let kept = BTreeMap::from([("image".to_string(), "no spaces allowed".to_string())]);
        let (mut args, _) = parse(&["--resume", "x"]);
        let err = take(&mut args, &kept, |_| false).unwrap_err();
        assert!(
            err.starts_with("its last attempt's --image `no spaces allowed`: "),
            "{err}"
        );
    }
}
