//! The interactive client's command line, parsed: the original client's
//! commands (`send`, `ms`, `group`, `gs`, `id`, `clear`, `help`, `quit`,
//! Enter to fetch) and ours (`contacts`, `log`, `/write`).

/// One command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// An empty line: fetch messages.
    Fetch,
    Send {
        to: String,
        text: String,
    },
    /// `ms A,B TEXT`.
    Multi {
        to: Vec<String>,
        text: String,
    },
    /// `group NAME A B ..` (or `A,B,..`, as the original wrote it).
    Group {
        name: String,
        members: Vec<String>,
    },
    /// `gs GROUP TEXT`.
    GroupSend {
        group: String,
        text: String,
    },
    /// `/write NAME` (or `write NAME`): the owner writes the message on
    /// the device's keyboard (issue 19); the laptop never sees it.
    Write {
        to: String,
    },
    Id,
    Clear,
    Help,
    Quit,
    Contacts,
    Log,
}

pub const HELP: &str = "\
commands:
  send NAME TEXT        seal TEXT for NAME on the device and send it
  ms A,B,.. TEXT        send TEXT to several contacts
  group NAME A B ..     define a group (members by space or comma)
  gs GROUP TEXT         send TEXT to every member of GROUP
  /write NAME           write a message to NAME on the device's keyboard
                        (tap Seal there); this laptop never sees its text
  (Enter)               fetch new messages now (they also arrive by themselves)
  contacts              pad left per contact, from the device
  log                   recent warnings (replay, skipped, integrity, failures)
  id                    who and where you are
  clear                 clear the screen
  help                  this text
  quit                  leave (also Ctrl-D)";

fn names(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses one line; `Err` is the usage to show.
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Command::Fetch);
    }
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim_start();
    let two = |usage: &str| -> Result<(String, String), String> {
        match rest.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.trim().is_empty() => {
                Ok((a.to_string(), b.trim_start().to_string()))
            }
            _ => Err(format!("usage: {usage}")),
        }
    };
    let bare = |c: Command| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(format!("{word} takes no arguments"))
        }
    };
    match word {
        "send" => two("send NAME TEXT").map(|(to, text)| Command::Send { to, text }),
        "ms" => two("ms A,B,.. TEXT").map(|(to, text)| Command::Multi {
            to: names(&to),
            text,
        }),
        "gs" => two("gs GROUP TEXT").map(|(group, text)| Command::GroupSend { group, text }),
        "group" => {
            let mut n = names(rest);
            if n.len() < 2 {
                return Err("usage: group NAME A B ..".into());
            }
            let name = n.remove(0);
            Ok(Command::Group { name, members: n })
        }
        "/write" | "write" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
            [to] => Ok(Command::Write { to: to.to_string() }),
            [] => Err("usage: /write NAME (then write the message on the device)".into()),
            _ => Err(
                "usage: /write NAME: the message is written on the device's keyboard, not here"
                    .into(),
            ),
        },
        "id" => bare(Command::Id),
        "clear" => bare(Command::Clear),
        "help" | "?" => bare(Command::Help),
        "quit" | "exit" => bare(Command::Quit),
        "contacts" => bare(Command::Contacts),
        "log" => bare(Command::Log),
        _ => Err(format!("unknown command {word:?}; `help` lists them")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_commands() {
        assert_eq!(parse("  "), Ok(Command::Fetch));
        assert_eq!(
            parse("send bob hello  there"),
            Ok(Command::Send {
                to: "bob".into(),
                text: "hello  there".into()
            })
        );
        assert_eq!(
            parse("ms bob,carol hi"),
            Ok(Command::Multi {
                to: vec!["bob".into(), "carol".into()],
                text: "hi".into()
            })
        );
        let g = Ok(Command::Group {
            name: "f".into(),
            members: vec!["bob".into(), "carol".into()],
        });
        assert_eq!(parse("group f bob carol"), g);
        assert_eq!(parse("group f bob,carol"), g);
        assert_eq!(
            parse("gs f yo"),
            Ok(Command::GroupSend {
                group: "f".into(),
                text: "yo".into()
            })
        );
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert!(parse("send bob").unwrap_err().contains("usage: send"));
        assert!(parse("group f").is_err());
        assert!(parse("frobnicate").unwrap_err().contains("help"));
        assert!(parse("id x").is_err());
    }

    /// Issue 19: `/write NAME` (or `write NAME`) takes one name and no
    /// text; it is in the help.
    #[test]
    fn write_on_the_device() {
        let bob = Ok(Command::Write { to: "bob".into() });
        assert_eq!(parse("/write bob"), bob);
        assert_eq!(parse("  write   bob "), bob);
        assert!(parse("/write").unwrap_err().contains("usage: /write NAME"));
        let e = parse("/write bob hello").unwrap_err();
        assert!(e.contains("on the device's keyboard"), "{e}");
        assert!(HELP.contains("/write NAME"));
    }
}
