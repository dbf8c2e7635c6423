use super::{Context, interpolations};

fn contexts(script: &str) -> Vec<Context> {
    interpolations(script).into_iter().map(|i| i.context).collect()
}

fn heredoc(c: &Context) -> (&str, bool) {
    match c {
        Context::Heredoc(h) => (h.delimiter.as_str(), false),
        Context::HeredocLiteral(h) => (h.delimiter.as_str(), true),
        other => panic!("not a here-document: {other:?}"),
    }
}

#[test]
fn finds_the_context_of_each_value() {
    use Context::*;
    assert_eq!(contexts("echo {{ x }}"), [Bare]);
    assert_eq!(contexts("echo \"Deploying {{ x }}\" '{{ y }}' {{ z }}"), [Double, Single, Bare]);
    assert_eq!(contexts("echo \"$(cat {{ f }})\" \"$(echo \"{{ g }}\")\""), [Bare, Double]);
    assert_eq!(contexts("echo \"it's\" {{ x }}\necho \"{{ y }}\""), [Bare, Double]);
    assert_eq!(contexts("echo {{ x | replace('a', \"b\") }} \"ok\""), [Bare]);
    assert_eq!(contexts("# don't {{ x }}\necho {{ y }}"), [Comment, Bare]);
    assert_eq!(contexts("echo a#{{ x }} $#"), [Bare]);
    assert_eq!(contexts("echo \\\"{{ x }}"), [Bare]);
    assert_eq!(contexts("echo $'a {{ x }}'"), [AnsiC]);
    assert_eq!(contexts("echo $((1 + {{ n }})) {{ m }}"), [Arithmetic, Bare]);
    assert_eq!(contexts("echo `echo {{ x }}`")[0], Refused(super::IN_BACKQUOTES));
    assert_eq!(contexts("echo \"`echo {{ x }}`\"")[0], Refused(super::IN_BACKQUOTES));
    assert_eq!(contexts("echo ${A:-{{ x }}}")[0], Refused(super::IN_PARAMETER));
    assert_eq!(contexts("echo \"${A:-{{ x }}}\" {{ y }}")[1], Bare);
    assert_eq!(contexts("{% raw %}echo \"{{ x }}\"{% endraw %} {{ y }}"), [Bare]);
    assert_eq!(contexts("echo {# \" #} {{ x }}"), [Bare]);
    assert_eq!(
        contexts("echo \\{{ x }} \"\\{{ y }}\" '\\{{ z }}'"),
        [Refused(super::AFTER_BACKSLASH), Refused(super::AFTER_BACKSLASH), Single]
    );
    assert_eq!(contexts("echo ${{ x }} \"${{ y }}\""), [Refused(super::AFTER_DOLLAR), Refused(super::AFTER_DOLLAR)]);
    assert_eq!(contexts("echo a\\\n{{ x }}"), [Bare]);
    assert_eq!(interpolations("echo a\\\n{{ x }}")[0].line, 2);
}

#[test]
fn reads_here_documents() {
    let script = "cat <<EOF > out\nDeploying {{ v }} \"{{ w }}\"\nEOF\necho {{ x }}\ncat <<'END'\n{{ y }}\nEND\ncat <<-\"T\" <<U\n\t{{ z }}\n\tT\n$(echo {{ q }})\nU\n";
    let found = interpolations(script);
    let cs: Vec<&Context> = found.iter().map(|i| &i.context).collect();
    assert_eq!(heredoc(cs[0]), ("EOF", false));
    assert_eq!(heredoc(cs[1]), ("EOF", false), "quotes mean nothing in a here-document");
    assert_eq!(*cs[2], Context::Bare);
    assert_eq!(heredoc(cs[3]), ("END", true));
    assert_eq!(heredoc(cs[4]), ("T", true));
    assert_eq!(*cs[5], Context::Bare, "a command substitution in an unquoted body");
    assert_eq!(found[0].line, 2);
    assert_eq!((found[1].line, found[1].nth), (2, 1));
    match cs[0] {
        Context::Heredoc(h) => assert_eq!((h.before.as_str(), h.after.as_str()), ("Deploying ", " \"{{ w }}\"")),
        _ => unreachable!(),
    }
    // Here-strings are not here-documents.
    assert_eq!(contexts("cat <<< {{ x }}\necho {{ y }}"), [Context::Bare, Context::Bare]);
}

#[test]
fn writes_values_for_their_context() {
    use super::escape;
    let dq = escape("a\"b$c`d\\e", &Context::Double).unwrap();
    assert_eq!(dq, "a\\\"b\\$c\\`d\\\\e");
    assert_eq!(escape("it's", &Context::Single).unwrap(), "'\"it's\"'");
    assert_eq!(escape("a\nb", &Context::Comment).unwrap(), "a b");
    let h = super::Heredoc { delimiter: "EOF".into(), strip_tabs: false, before: String::new(), after: String::new() };
    assert!(escape("x\nEOF\nrm -rf /", &Context::Heredoc(h.clone())).unwrap_err().contains("here-document"));
    assert!(escape("EOF", &Context::HeredocLiteral(h.clone())).is_err());
    assert_eq!(escape("$HOME `x` \\", &Context::Heredoc(h.clone())).unwrap(), "\\$HOME \\`x\\` \\\\");
    assert_eq!(escape("$HOME", &Context::HeredocLiteral(h)).unwrap(), "$HOME");
    let tabs = super::Heredoc { delimiter: "EOF".into(), strip_tabs: true, before: "E".into(), after: String::new() };
    assert!(escape("OF", &Context::Heredoc(tabs.clone())).is_err(), "completes the delimiter line");
    assert!(escape("x\n\t\tEOF", &Context::Heredoc(tabs)).is_err());
    assert!(escape("a\0b", &Context::Bare).is_err());
    // dash drops the first byte of a non-ASCII character after a delimiter prefix.
    let eof =
        super::Heredoc { delimiter: "EOF".into(), strip_tabs: false, before: String::new(), after: String::new() };
    assert!(escape("x\nE¡", &Context::Heredoc(eof.clone())).unwrap_err().contains("dash"));
    assert!(escape("x\nEOFx", &Context::Heredoc(eof.clone())).is_err());
    assert!(escape("x\nEz¡ and E", &Context::Heredoc(eof)).is_ok());
    assert!(escape("x", &Context::Refused("no")).is_err());
}

#[test]
fn values_in_arithmetic_are_integers_only() {
    use Context::*;
    // `<<` in arithmetic is a shift, not a here-document: the values after it are words.
    assert_eq!(contexts("echo $((1 << 20))\necho {{ v }}"), [Bare]);
    assert_eq!(contexts("(( x = 1 << {{ n }} ))\necho {{ v }} \"{{ w }}\""), [Arithmetic, Bare, Double]);
    assert_eq!(contexts("echo \"$(( {{ n }} * (2 + 1) ))\" {{ v }}"), [Arithmetic, Bare]);
    assert_eq!(contexts("echo $[ {{ n }} << 2 ] {{ v }}"), [Arithmetic, Bare]);
    assert_eq!(contexts("echo $(( $(wc -l < {{ f }}) + 1 ))"), [Arithmetic]);
    assert_eq!(
        contexts("if true; then let x={{ n }} \"y = {{ m }}\"; fi; echo {{ v }}"),
        [Arithmetic, Arithmetic, Bare]
    );
    assert_eq!(
        contexts("let x=1<<EOF\n{{ v }}\nEOF"),
        [Context::Heredoc(super::Heredoc {
            delimiter: "EOF".into(),
            strip_tabs: false,
            before: String::new(),
            after: String::new(),
        })]
    );
    assert_eq!(contexts("declare -i n={{ n }}; declare s={{ s }}; export X=\"{{ x }}\""), [Arithmetic, Bare, Double]);
    assert_eq!(contexts("a[{{ i }}]=1; a[1]={{ v }}"), [Arithmetic, Bare]);
    assert_eq!(contexts("[[ {{ n }} -gt 3 && \"{{ m }}\" -eq 1 && {{ e }} == prod ]]"), [Arithmetic, Arithmetic, Bare]);
    assert_eq!(contexts("[ {{ n }} -gt 3 ]"), [Bare], "test and [ compare integers strictly");
    // Anything but an integer is refused; an integer is written as it is.
    let escape = |v: &str| super::escape(v, &Arithmetic);
    assert_eq!(escape("-42").unwrap(), "-42");
    assert_eq!(escape("+7").unwrap(), "+7");
    for bad in ["", "-", "1.5", "a[$(touch pwned)]", "1; rm -rf /", " 1", "x"] {
        assert_eq!(escape(bad).unwrap_err(), super::NOT_AN_INTEGER, "{bad:?}");
    }
}

#[test]
fn values_as_variable_names_are_refused() {
    use Context::*;
    let name = Refused(super::AS_NAME);
    assert_eq!(contexts("unset {{ x }}"), [name.clone()]);
    assert_eq!(contexts("read -r {{ x }}"), [name.clone()]);
    assert_eq!(contexts("read -p {{ prompt }} answer"), [Bare]);
    assert_eq!(contexts("declare {{ x }}=1"), [name.clone()]);
    assert_eq!(contexts("declare -n r={{ x }}"), [name.clone()]);
    assert_eq!(contexts("printf -v {{ x }} %s 1; printf %s {{ y }}"), [name.clone(), Bare]);
    assert_eq!(contexts("[[ -v {{ x }} ]]; test -v \"{{ y }}\""), [name.clone(), name]);
}

#[test]
fn case_patterns_do_not_end_a_command_substitution() {
    use Context::*;
    let script = "x=\"$(case $1 in a) echo A;; (b) echo B;; esac) {{ v }}\"";
    assert_eq!(contexts(script), [Double]);
    let script = "x=$( { case $1 in\n  start) echo {{ a }} ;;\nesac; } ) ; echo \"{{ b }}\"";
    assert_eq!(contexts(script), [Bare, Double]);
    // `case` as an argument is no keyword.
    assert_eq!(contexts("x=\"$(echo case) {{ v }}\""), [Double]);
}
