//! The README's settings tables against the CLI's own definition: a flag added
//! without a row, a row naming no flag, a setting the file cannot hold or an
//! environment variable named otherwise than the README says all fail here.

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;

use super::Cli;
use crate::config::FileSettings;

/// The subcommands whose flags are settings (the others are tools with flags of
/// their own, documented in their `--help`).
const SETTINGS_COMMANDS: [&str; 5] = ["serve", "init", "clean", "audit", "set-timings"];

/// Flags of those subcommands that are not settings, so have no row in the tables
/// and no key in the file.
const NOT_SETTINGS: [(&str, &str); 3] = [
    ("config", "names the settings file itself (described above the table)"),
    ("dry-run", "an action of one `clean` invocation, never a standing setting"),
    ("json", "how one invocation prints its report"),
];

/// Settings that are flags and environment variables only, never file keys.
const NOT_IN_FILE: [(&str, &str); 3] = [
    ("s3-access-key-id", "a credential: secrets stay out of files"),
    ("s3-secret-access-key", "a credential: secrets stay out of files"),
    ("s3-session-token", "a credential: secrets stay out of files"),
];

/// One flag of the settings commands: the commands that have it, its variable.
#[derive(Debug, Default)]
struct Flag {
    commands: BTreeSet<String>,
    env: Option<String>,
}

/// Every long flag of the settings commands (globals included), by name.
fn cli_flags() -> BTreeMap<String, Flag> {
    let mut command = Cli::command();
    // Building propagates the global flags into every subcommand.
    command.build();
    let mut flags = BTreeMap::<String, Flag>::new();
    for sub in command.get_subcommands().filter(|s| SETTINGS_COMMANDS.contains(&s.get_name())) {
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long().filter(|l| !matches!(*l, "help" | "version")) else { continue };
            let flag = flags.entry(long.to_owned()).or_default();
            flag.commands.insert(sub.get_name().to_owned());
            flag.env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        }
    }
    flags
}

/// One row of a README settings table.
#[derive(Debug)]
struct Row {
    /// The commands the row restricts itself to (`clean --every`), if any.
    commands: Vec<String>,
    /// The flags in its first cell, without `--`.
    flags: Vec<String>,
    /// Its second cell.
    second: String,
}

/// The rows of the table headed `header` in the README section `heading`.
fn readme_rows(heading: &str, header: &str) -> Vec<Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md is readable");
    let start = readme.find(&format!("\n{heading}")).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let section = &readme[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let table = section.split_once(header).unwrap_or_else(|| panic!("{heading:?} has no table {header:?}")).1;
    let rows: Vec<Row> = table
        .lines()
        .skip(2) // the rest of the header line and the separator
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (first, second) = (cells[1], cells[2]);
            let before_flags = &first[..first.find("--").unwrap_or(first.len())];
            Row {
                commands: words(before_flags).collect(),
                flags: first.split("--").skip(1).map(|f| words(f).next().unwrap_or_default()).collect(),
                second: second.to_owned(),
            }
        })
        .collect();
    assert!(!rows.is_empty(), "the table {header:?} under {heading:?} has no rows");
    rows
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
}

fn configuration_rows() -> Vec<Row> {
    readme_rows("## Configuration", "| setting | default | meaning |")
}

fn s3_rows() -> Vec<Row> {
    readme_rows("## Production", "| setting | env | meaning |")
}

fn is_setting(flag: &str) -> bool {
    !NOT_SETTINGS.iter().any(|(name, _)| *name == flag)
}

#[test]
fn every_settings_flag_has_a_readme_row_and_every_row_names_a_real_flag() {
    let flags = cli_flags();
    let rows: Vec<Row> = configuration_rows().into_iter().chain(s3_rows()).collect();
    let documented: BTreeSet<&str> = rows.iter().flat_map(|r| r.flags.iter().map(String::as_str)).collect();
    let undocumented: Vec<&str> =
        flags.keys().map(String::as_str).filter(|f| is_setting(f) && !documented.contains(f)).collect();
    assert!(undocumented.is_empty(), "settings flags with no README row: {undocumented:?}");
    for row in &rows {
        assert!(!row.flags.is_empty(), "a README row names no flag: {row:?}");
        for name in &row.flags {
            let flag = flags.get(name).unwrap_or_else(|| panic!("README row names --{name}, which no command has"));
            for command in &row.commands {
                assert!(
                    flag.commands.contains(command),
                    "README says `{command} --{name}`, but {command} has no such flag"
                );
            }
        }
    }
}

#[test]
fn every_setting_is_a_file_key_except_the_credentials() {
    for (name, _) in cli_flags().iter().filter(|(name, _)| is_setting(name)) {
        let secret = NOT_IN_FILE.iter().any(|(flag, _)| flag == name);
        assert_eq!(FileSettings::accepts_key(name), !secret, "--{name}: file key accepted?");
    }
    for (name, _why) in NOT_SETTINGS {
        assert!(!FileSettings::accepts_key(name), "--{name} is no setting, yet the file accepts it");
    }
}

#[test]
fn environment_variables_are_the_flag_names_or_the_readmes_aws_ones() {
    let flags = cli_flags();
    let aws: BTreeMap<String, String> = s3_rows()
        .iter()
        .flat_map(|row| row.flags.iter().cloned().zip(words(&row.second).filter(|w| w.starts_with("AWS_"))))
        .collect();
    for (name, flag) in flags.iter().filter(|(name, _)| is_setting(name)) {
        let env = flag.env.as_deref().unwrap_or_else(|| panic!("--{name} has no environment variable"));
        let expected = aws
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("PROFILESTORE_{}", name.to_ascii_uppercase().replace('-', "_")));
        assert_eq!(env, expected, "--{name}'s environment variable");
    }
    assert!(aws.len() >= 5, "the README's S3 table names the AWS variables: {aws:?}");
}
