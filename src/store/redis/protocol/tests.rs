use super::*;

const SESSION_SCRIPTS: &[(&str, &str)] = &[
    ("tokens.lua", include_str!("../scripts/tokens.lua")),
    ("token_lib.lua", include_str!("../scripts/token_lib.lua")),
    ("write.lua", include_str!("../scripts/write.lua")),
    ("write_lib.lua", include_str!("../scripts/write_lib.lua")),
    ("rules.lua", include_str!("../scripts/rules.lua")),
    ("update.lua", include_str!("../scripts/update.lua")),
    ("delete.lua", include_str!("../scripts/delete.lua")),
    ("take.lua", include_str!("../scripts/take.lua")),
    ("list.lua", include_str!("../scripts/list.lua")),
    ("revoke.lua", include_str!("../scripts/revoke.lua")),
    ("expired.lua", include_str!("../scripts/expired.lua")),
    ("events_lib.lua", include_str!("../scripts/events_lib.lua")),
];

/// Code lines of a script (comments dropped).
fn code(source: &str) -> String {
    source
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The single-quoted strings of `code`.
fn literals(code: &str) -> Vec<&str> {
    code.split('\'').skip(1).step_by(2).collect()
}

#[test]
fn scripts_spell_no_code_and_use_every_name() {
    let all: String = SESSION_SCRIPTS.iter().map(|(_, s)| code(s)).collect();
    for (file, source) in SESSION_SCRIPTS {
        let code = code(source);
        // A mode, policy or reply code compared or returned as a literal.
        for bad in ["== '", "~= '", "return {'"] {
            for (i, _) in code.match_indices(bad) {
                let lit = &code[i + bad.len()..];
                let lit = &lit[..lit.find('\'').unwrap_or(lit.len())];
                assert!(
                    !CODES.iter().any(|(_, v)| *v == lit),
                    "{file} spells the code '{lit}': use its name from CODES"
                );
            }
        }
    }
    for (name, _) in CODES {
        assert!(all.contains(name), "no script uses {name}");
    }
}

#[test]
fn field_and_event_names_in_scripts_are_the_rust_ones() {
    use crate::events::EventKind;
    use crate::store::record::FIELDS;
    let events: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
    for (file, source) in SESSION_SCRIPTS {
        let code = code(source);
        for lit in literals(&code) {
            assert!(
                !lit.starts_with("m:"),
                "{file} spells the field '{lit}': use its F_* name from the prelude"
            );
        }
        // Every F_* name a script uses is one the prelude defines from FIELDS.
        for (i, _) in code.match_indices("F_") {
            if i > 0 && code.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = code[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                FIELDS
                    .iter()
                    .any(|f| format!("F_{}", f.trim_start_matches("m:").to_uppercase()) == name),
                "{file}: {name} is not a field of the record"
            );
        }
        // Events a script records by name: xadd(now, '<kind>', ...).
        for (i, _) in code.match_indices("xadd(") {
            let call = &code[i + "xadd(".len()..];
            let call = &call[..call.find(')').unwrap_or(call.len())];
            let kind = call.split(',').nth(1).map(str::trim).unwrap_or("");
            if let Some(name) = kind.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')) {
                assert!(events.contains(&name), "{file}: unknown event '{name}'");
            }
        }
    }
}

/// A script that reads the user agent reads every piece of it (`F_UA, F_UA2, F_UA3,
/// F_UA4`, record::USER_AGENT_PIECES) and joins them with `user_agent`.
#[test]
fn scripts_read_the_whole_user_agent() {
    use crate::store::record::USER_AGENT_PIECES;
    let names: Vec<String> = USER_AGENT_PIECES
        .iter()
        .map(|f| format!("F_{}", f.trim_start_matches("m:").to_uppercase()))
        .collect();
    let all = names.join(", ");
    for (file, source) in SESSION_SCRIPTS {
        let code: String = code(source)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let reads = code.matches(&format!("{}, ", names[0])).count();
        assert_eq!(
            reads,
            code.matches(&all).count(),
            "{file}: read the user agent as {all}"
        );
        assert!(
            reads == 0 || *file == "events_lib.lua" || code.contains("user_agent("),
            "{file} reads the user agent's pieces without joining them"
        );
    }
}

#[test]
fn write_replies_decode_into_outcomes() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(matches!(Write::decode(s(&["0"])), Ok(WriteOutcome::Gone)));
    assert!(matches!(
        Write::decode(s(&["-1"])),
        Ok(WriteOutcome::Collision)
    ));
    assert!(matches!(
        Write::decode(s(&["-2"])),
        Ok(WriteOutcome::Rejected)
    ));
    assert!(matches!(
        Write::decode(s(&["-3", "1200"])),
        Ok(WriteOutcome::TooLarge { size: 1200 })
    ));
    assert!(matches!(
        Write::decode(s(&["1500"])),
        Ok(WriteOutcome::Written { .. })
    ));
    for bad in [&[][..], &["-3"], &["x"], &["-7"]] {
        assert!(Write::decode(s(bad)).is_err(), "{bad:?}");
    }
    assert!(matches!(
        Update::decode(&[0]),
        Ok((WriteOutcome::Gone, None))
    ));
    assert!(matches!(
        Update::decode(&[-40]),
        Ok((WriteOutcome::TooLarge { size: 40 }, None))
    ));
    assert!(matches!(
        Update::decode(&[1500, 9]),
        Ok((WriteOutcome::Written { .. }, Some(9)))
    ));
    for bad in [&[][..], &[5], &[-1, 2], &[1, 2, 3]] {
        assert!(Update::decode(bad).is_err(), "{bad:?}");
    }
}
