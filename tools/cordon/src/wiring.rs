//! Mistakes in files, caught before anything is built or booted: the contract files of the
//! boot package compiled with every error and warning, and the system manifest's channels
//! checked against those contracts and against each SIP's own manifest, each error at the
//! file, line and column it is about.
//!
//! The kernel keeps its own checks of the package it is handed, with the same rule for a
//! SIP's ends (`bootpkg::endpoint_mismatches`): a package built some other way with these
//! mistakes fails the boot for a channel of an unknown contract, and does not start a
//! SIP whose ends do not match the endpoints its manifest declares. These move the
//! verdict before the boot and report every mistake at once.

use anyhow::bail;
use contracts::Protocol;

use cordon_abi::Role;

use crate::system::{ContractFile, System};

pub use cordon_cli::report::render;

/// Compiles the boot package's contract files: the protocols and the rendered warnings,
/// or every file's errors (a contract declared in two files among them).
pub fn check_contracts(files: &[ContractFile]) -> anyhow::Result<(Vec<Protocol>, String)> {
    let mut protocols: Vec<(Protocol, String)> = Vec::new();
    let mut errors = String::new();
    let mut warnings = String::new();
    for file in files {
        let shown = file.path.display().to_string();
        let Ok(source) = std::str::from_utf8(&file.bytes) else {
            errors.push_str(&format!("{shown}: not UTF-8 text\n"));
            continue;
        };
        let report = contracts::compile_all(source);
        if !report.errors.is_empty() {
            errors.push_str(&render(&report, &shown, source));
            continue;
        }
        warnings.push_str(&render(&report, &shown, source));
        for protocol in report.protocols {
            if let Some((_, other)) = protocols.iter().find(|(p, _)| p.name == protocol.name) {
                let span = report
                    .names
                    .iter()
                    .find(|(name, _)| *name == protocol.name)
                    .map_or_else(Default::default, |(_, span)| *span);
                let err = contracts::Error::new(
                    span,
                    format!("contract `{}` is declared in {other} too", protocol.name),
                );
                errors.push_str(&err.render(&shown, source));
                continue;
            }
            protocols.push((protocol, shown.clone()));
        }
    }
    let protocols: Vec<Protocol> = protocols.into_iter().map(|(p, _)| p).collect();
    if !errors.is_empty() {
        bail!("the boot package's contracts do not compile:\n{errors}");
    }
    Ok((protocols, warnings))
}

/// Checks every channel of `system` against the compiled `protocols` and against the
/// endpoints each SIP's own manifest declares (name, role, contract), and that every
/// declared endpoint is connected. Reports every mistake found. A module the verifier
/// refuses is left for the kernel to report.
pub fn check_channels(system: &System, protocols: &[Protocol]) -> anyhow::Result<()> {
    let mut errors: Vec<String> = Vec::new();
    let known: Vec<&str> = protocols.iter().map(|p| p.name.as_str()).collect();
    let site = |i: usize, f: fn(&crate::system::ChannelSite) -> &String| {
        system
            .channel_sites
            .get(i)
            .map_or_else(|| system.origin.clone(), |s| f(s).clone())
    };
    for (i, c) in system.channels.iter().enumerate() {
        if !known.contains(&c.contract.as_str()) {
            errors.push(format!(
                "{}: no contract `{}` (the package's contracts: {})",
                site(i, |s| &s.contract),
                c.contract,
                known.join(", ")
            ));
        }
    }
    for (index, sip) in system.sips.iter().enumerate() {
        let Ok(Some(manifest)) = system.own_manifest(sip) else {
            continue;
        };
        let declared = &manifest.endpoints;
        // The ends this entry is given, each with where the manifest writes it.
        let mut given = Vec::new();
        let mut sites = Vec::new();
        for (i, c) in system.channels.iter().enumerate() {
            for (end, role, at) in [
                (&c.exporter, Role::Exporter, site(i, |s| &s.exporter)),
                (&c.importer, Role::Importer, site(i, |s| &s.importer)),
            ] {
                if end.sip as usize == index {
                    given.push(bootpkg::GivenEnd {
                        endpoint: &end.endpoint,
                        contract: Some(&c.contract),
                        role: Some(role),
                    });
                    sites.push(at);
                }
            }
        }
        // The kernel's rule; here every mismatch is reported, each at its place.
        for mismatch in bootpkg::endpoint_mismatches(&given, declared) {
            let words = mismatch.describe(sip, &given, declared);
            errors.push(match mismatch {
                bootpkg::EndpointMismatch::Undeclared(i) => {
                    format!("{}: `{sip}.{}`: {words}", sites[i], given[i].endpoint)
                }
                bootpkg::EndpointMismatch::Role(i) | bootpkg::EndpointMismatch::Contract(i) => {
                    format!("{}: {words}", sites[i])
                }
                bootpkg::EndpointMismatch::Unconnected(d) => {
                    let decl = &declared[d];
                    let peer = match decl.role {
                        Role::Exporter => "importer",
                        Role::Importer => "exporter",
                    };
                    format!(
                        "{}: {words}; add\n  [[channels]]\n  contract = \"{}\"\n  {} = \"{sip}.{}\"\n  {peer} = \"PEER.ENDPOINT\"",
                        system.origin,
                        decl.contract,
                        bootpkg::role_name(decl.role),
                        decl.name,
                    )
                }
            });
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_protocols() -> Vec<Protocol> {
        let files = crate::system::contract_files().unwrap();
        check_contracts(&files).unwrap().0
    }

    #[test]
    fn shipped_contracts_compile_and_shipped_systems_are_wired_right() {
        let protocols = shipped_protocols();
        assert!(protocols.iter().any(|p| p.name == "Echo"));
        for name in crate::system::names() {
            let system = crate::system::load(&name).unwrap();
            check_channels(&system, &protocols).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn every_wiring_mistake_is_reported_at_its_position() {
        let system = crate::system::parse(
            "sips = [\"echo-server\", \"echo-client\", \"hello\"]\n\
             [[channels]]\n\
             contract = \"Ech0\"\n\
             exporter = \"echo-client.server\"\n\
             importer = \"echo-server.clients\"\n\
             [[channels]]\n\
             contract = \"Echo\"\n\
             exporter = \"hello.out\"\n\
             importer = \"echo-server.back\"\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            check_channels(&system, &shipped_protocols()).unwrap_err()
        );
        for needle in [
            "<system>:3:12: no contract `Ech0` (the package's contracts: ",
            "<system>:5:12: `echo-server.clients` is the importer of this channel, but `echo-server`'s own manifest declares it as the exporter",
            "<system>:5:12: `echo-server.clients` is an end of a Ech0 channel, but `echo-server`'s own manifest declares it for Echo",
            "<system>:4:12: `echo-client.server` is the exporter of this channel",
            "<system>:8:12: `hello.out`: `hello`'s own manifest declares no endpoint `out` (it declares none)",
            "<system>:9:12: `echo-server.back`: `echo-server`'s own manifest declares no endpoint `back` (it declares `clients` (exporter of Echo))",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in\n{err}");
        }
    }

    #[test]
    fn a_server_takes_numbered_connections_up_to_its_declared_count() {
        let protocols = shipped_protocols();
        let webfiles = crate::system::load("webfiles").unwrap();
        // Up to the file system's `connections = 8`: wired right.
        let eight = crate::webfiles::with_clients(&webfiles, 8).unwrap();
        assert_eq!(eight.sips.iter().filter(|s| *s == "webfiles").count(), 8);
        check_channels(&eight, &protocols).unwrap();
        // One more is refused, with what the file system declares.
        let nine = crate::webfiles::with_clients(&webfiles, 9).unwrap();
        let err = format!("{:#}", check_channels(&nine, &protocols).unwrap_err());
        assert!(
            err.contains("`fs.clients#9`: `fs`'s own manifest declares no endpoint `clients#9` (it declares `disk` (importer of BlockDevice), `clients` (exporter of FileSystem, also `clients#2` ... `clients#8`))"),
            "{err}"
        );
        // A numbered connection of an endpoint that takes one: refused the same way.
        let system = crate::system::parse(
            "sips = [\"echo-server\", \"echo-client\", \"echo-client\"]\n\
             [[channels]]\n\
             contract = \"Echo\"\n\
             exporter = \"echo-server.clients\"\n\
             importer = \"echo-client.server\"\n\
             [[channels]]\n\
             contract = \"Echo\"\n\
             exporter = \"echo-server.clients#2\"\n\
             importer = \"echo-client#2.server\"\n",
        )
        .unwrap();
        let err = format!("{:#}", check_channels(&system, &protocols).unwrap_err());
        assert!(
            err.contains("<system>:8:12: `echo-server.clients#2`: `echo-server`'s own manifest declares no endpoint `clients#2` (it declares `clients` (exporter of Echo))"),
            "{err}"
        );
    }

    #[test]
    fn a_declared_endpoint_no_channel_connects_is_refused() {
        let system = crate::system::of_sips(&["echo-server".to_string()]);
        let err = format!(
            "{:#}",
            check_channels(&system, &shipped_protocols()).unwrap_err()
        );
        assert!(
            err.contains("--sip: `echo-server`'s own manifest declares endpoint `clients` (exporter of Echo), which no channel connects"),
            "{err}"
        );
        assert!(err.contains("importer = \"PEER.ENDPOINT\""), "{err}");
    }

    #[test]
    fn every_contract_error_of_every_file_is_reported() {
        let file = |name: &str, text: &str| ContractFile {
            name: name.into(),
            path: std::path::Path::new("dir").join(name),
            bytes: text.as_bytes().to_vec(),
        };
        let files = vec![
            file(
                "a.contract",
                "contract A { message M; initial state S { N? -> T; } }",
            ),
            file("b.contract", "contract B { mesage M; }"),
            file(
                "c.contract",
                "contract C { message M; message Unused; initial state S { M? -> M! -> S; } }",
            ),
            file(
                "d.contract",
                "\ncontract C { message M; initial state S { M? -> M! -> S; } }",
            ),
        ];
        let err = format!("{:#}", check_contracts(&files).unwrap_err());
        for needle in [
            "dir/a.contract:1:43: error: unknown message `N`",
            "dir/a.contract:1:49: error: unknown state `T`",
            "dir/b.contract:1:14: error: ",
            "dir/d.contract:2:10: error: contract `C` is declared in dir/c.contract too",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in\n{err}");
        }
        let (protocols, warnings) = check_contracts(&files[2..3]).unwrap();
        assert_eq!(protocols.len(), 1);
        assert!(
            warnings.contains("dir/c.contract:1:33: warning: message `Unused`"),
            "{warnings}"
        );
    }
}
