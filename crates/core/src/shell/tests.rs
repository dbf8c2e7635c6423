use super::{Context, interpolations};

pub(super) fn contexts(script: &str) -> Vec<Context> {
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
    assert_eq!(contexts("echo `echo {{ x }}`")[0], Refused(super::scan::IN_BACKQUOTES));
    assert_eq!(contexts("echo \"`echo {{ x }}`\"")[0], Refused(super::scan::IN_BACKQUOTES));
    assert_eq!(contexts("echo ${A:-{{ x }}}")[0], Refused(super::scan::IN_PARAMETER));
    assert_eq!(contexts("echo \"${A:-{{ x }}}\" {{ y }}")[1], Bare);
    assert_eq!(contexts("{% raw %}echo \"{{ x }}\"{% endraw %} {{ y }}"), [Bare]);
    assert_eq!(contexts("echo {# \" #} {{ x }}"), [Bare]);
    assert_eq!(
        contexts("echo \\{{ x }} \"\\{{ y }}\" '\\{{ z }}'"),
        [Refused(super::scan::AFTER_BACKSLASH), Refused(super::scan::AFTER_BACKSLASH), Single]
    );
    assert_eq!(
        contexts("echo ${{ x }} \"${{ y }}\""),
        [Refused(super::scan::AFTER_DOLLAR), Refused(super::scan::AFTER_DOLLAR)]
    );
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
    assert_eq!(escape("a\nb", &Context::Comment).unwrap(), "'a b'", "a quoted word, were it no comment");
    // A value bash would run a command from, were it ever taken as a name: refused anywhere.
    for context in [Context::Bare, Context::Double, Context::Comment] {
        assert!(escape("a[$(touch pwned)]", &context).unwrap_err().contains("subscript"));
        assert!(escape("x [ `id` ]", &context).is_err());
    }
    assert_eq!(escape("[INFO] $(x) a[1]", &Context::Bare).unwrap(), "'[INFO] $(x) a[1]'");
    let declared = Context::Declared(Box::new(Context::Bare));
    assert!(escape("($(touch pwned))", &declared).unwrap_err().contains("array"));
    assert_eq!(escape("a (b)", &declared).unwrap(), "'a (b)'");
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
    assert_eq!(
        contexts("declare -i n={{ n }}; declare s={{ s }}; export X=\"{{ x }}\""),
        [Arithmetic, Declared(Box::new(Bare)), Declared(Box::new(Double))]
    );
    assert_eq!(contexts("a[{{ i }}]=1; a[1]={{ v }}"), [Arithmetic, Bare]);
    assert_eq!(contexts("[[ {{ n }} -gt 3 && \"{{ m }}\" -eq 1 && {{ e }} == prod ]]"), [Arithmetic, Arithmetic, Bare]);
    assert_eq!(contexts("[ {{ n }} -gt 3 ]"), [Bare], "test and [ compare integers strictly");
    // Anything but an integer is refused; an integer is written as it is.
    let escape = |v: &str| super::escape(v, &Arithmetic);
    assert_eq!(escape("-42").unwrap(), "-42");
    assert_eq!(escape("+7").unwrap(), "+7");
    for bad in ["", "-", "1.5", "a[1]", "1; rm -rf /", " 1", "x"] {
        assert_eq!(escape(bad).unwrap_err(), super::NOT_AN_INTEGER, "{bad:?}");
    }
}

#[test]
fn values_as_variable_names_are_refused() {
    use Context::*;
    for script in ["unset {{ x }}", "read -r {{ x }}", "declare {{ x }}=1", "declare -n r={{ x }}", "[[ -v {{ x }} ]]"]
    {
        assert_eq!(contexts(script), [Refused(super::scan::AS_NAME)], "{script}");
    }
    assert_eq!(contexts("read -p {{ prompt }} answer"), [Bare]);
    assert_eq!(contexts("printf -v {{ x }} %s 1; printf %s {{ y }}"), [Refused(super::scan::AS_NAME), Bare]);
    assert_eq!(contexts("test -v \"{{ y }}\""), [Refused(super::scan::AS_NAME)]);
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

#[test]
fn follows_template_blocks_or_refuses_what_follows() {
    use super::scan::{BUILT_WORD, CONDITIONAL_SHELL};
    use Context::*;
    let lost = Refused(CONDITIONAL_SHELL);
    // Branches that leave the shell in the same place are followed.
    assert_eq!(contexts("{% if prod %}sudo {% endif %}systemctl restart {{ s }}"), [Bare]);
    assert_eq!(
        contexts("{% for h in hosts %}\nssh {{ h }} uptime\n{% endfor %}\necho {{ x }}"),
        [NotAnOption(Box::new(Host(Box::new(Bare)))), Bare]
    );
    assert_eq!(contexts("deploy {% if x %}--a{% else %}--b{% endif %} {{ v }}"), [Bare]);
    assert_eq!(
        contexts("echo {% if x %}\"a {{ v }}\"{% elif y %}'b {{ w }}'{% else %}c{% endif %} {{ z }}"),
        [Double, Single, Bare]
    );
    assert_eq!(contexts("echo pre{% if x %}a{% endif %}{{ v }}"), [Bare]);
    let conf = "cat > f <<EOF\n{% for h in hosts %}\nserver {{ h }}\n{% endfor %}\nEOF\necho {{ x }}";
    assert!(matches!(contexts(conf)[..], [Heredoc(_), Bare]));
    // A comment, a quote or a here-document opened in one branch only: lost.
    assert_eq!(contexts("{% if q %}#{% endif %}echo {{ p }} > out"), std::slice::from_ref(&lost));
    assert_eq!(contexts("echo {% if q %}\"{% endif %}{{ p }}\" {{ r }}"), [lost.clone(), lost.clone()]);
    assert_eq!(
        contexts("{% if q %}cat <<'EOF' {% else %}cat <<EOF {% endif %}\n{{ p }}\nEOF\necho {{ r }}"),
        [lost.clone(), lost.clone()]
    );
    assert_eq!(contexts("{% for x in xs %}(cd {{ x }}{% endfor %}) {{ y }}"), [lost.clone(), lost.clone()]);
    assert_eq!(contexts("echo {% for x in xs %}\"{{ x }}{% endfor %}"), [lost]);
    // A word the template builds, in a command that reads names.
    assert_eq!(contexts("declare {% if x %}N={% endif %}{{ v }}"), [Refused(BUILT_WORD)]);
    // Let and the like chosen by the template: the stricter reading.
    assert_eq!(contexts("{% if x %}let{% else %}echo{% endif %} y={{ v }}"), [Arithmetic]);
}

#[test]
fn refuses_what_changes_the_text_around_it() {
    use super::scan::{ANSI_C_QUOTE, CONTINUATION, TAG_AS_DELIMITER, TAG_ON_DELIMITER_LINE, TRIMMING};
    use Context::*;
    assert_eq!(contexts("echo start # log\n{{- p }}"), [Refused(TRIMMING)]);
    assert_eq!(contexts("echo \\\n  {{- p }}"), [Refused(TRIMMING)]);
    assert_eq!(contexts("{% if x -%}\necho {{ p }}\n{% endif %}"), [Refused(TRIMMING)]);
    assert_eq!(contexts("echo a{{- p -}}b"), [Bare], "trimming nothing changes nothing");
    assert_eq!(
        contexts("cat <<{{ q }} > out\nEOF\necho {{ p }}"),
        [Refused(TAG_AS_DELIMITER), Refused(TAG_AS_DELIMITER)]
    );
    assert_eq!(contexts("cat <<EOF\nx\nEOF{# end #}\necho {{ p }}"), [Refused(TAG_ON_DELIMITER_LINE)]);
    assert_eq!(contexts("echo $'it\\'s' {{ p }}"), [Refused(ANSI_C_QUOTE)]);
    assert_eq!(contexts("echo $'a\\nb' {{ p }}"), [Bare]);
    assert_eq!(contexts("x=\"$(ca\\\nse a in a) echo;; esac)\"; echo {{ p }}"), [Refused(CONTINUATION)]);
    assert_eq!(contexts("echo a\\\nb {{ p }}"), [Bare], "a continued argument is one word");
}

#[test]
fn reads_bash_syntax_that_moves_values() {
    use Context::*;
    // `#` in a `[[ =~ ]]` pattern is no comment; `((` inside `[[ ]]` is grouping.
    assert_eq!(contexts("[[ x =~ ^(#|$) ]] && echo {{ p }}"), [Bare]);
    assert_eq!(contexts("r=\"$([[ ((a == a)) ]] && echo y)\"; echo {{ p }}"), [Bare]);
    assert_eq!(contexts("[[ 1 -eq 1 &&\n {{ p }} -eq 0 ]]"), [Arithmetic]);
    // A pattern word `case` is no keyword.
    assert_eq!(contexts("x=\"$(case {{ q }} in\n case) echo;; esac)\"; echo {{ p }}"), [Bare, Bare]);
    assert_eq!(
        contexts("case $x in\n  (a|b) echo {{ p }};;\n  *) echo \"{{ q }}\"\nesac; echo {{ r }}"),
        [Bare, Double, Bare]
    );
    // Arrays: an integer array's words and any subscript are arithmetic.
    for script in [
        "declare -i arr=({{ p }})",
        "declare -ai a=([0]=1 {{ p }})",
        "a=([{{ p }}]=1)",
        "a[ {{ p }} ]=1",
        "declare -i x; x={{ p }}",
        "typeset -i x; x+={{ p }}",
        "f(){ local -i n; n={{ p }}; }",
        "builtin let {{ p }}",
        "command let {{ p }}",
        "time -p let {{ p }}",
        "coproc let {{ p }}",
        "function f { let {{ p }}; }",
        "builtin declare -i x={{ p }}",
    ] {
        assert_eq!(contexts(script), [Arithmetic], "{script}");
    }
    assert_eq!(contexts("a=({{ p }} \"{{ q }}\")"), [Bare, Double]);
    assert_eq!(contexts("sh -c 'deploy \"$1\"' sh {{ p }}; bash ./x.sh {{ q }}"), [Bare, Bare]);
    // A variable holding a value, evaluated as arithmetic later on.
    for script in [
        "x={{ p }}; echo $((x))",
        "x=\"{{ p }}\" let y=x",
        "n={{ p }}\n[[ $n -gt 3 ]]",
        "i={{ p }}; echo ${a[i]}",
        "export N={{ p }}; (( N > 1 ))",
    ] {
        assert_eq!(contexts(script), [Arithmetic], "{script}");
    }
    assert_eq!(contexts("n={{ p }}; [[ $n == 3 ]]; v={{ q }}; echo \"$v\" $((1 + 2))"), [Bare, Bare]);
    for script in [
        "eval echo {{ p }}",
        "trap {{ p }} EXIT",
        "{% if x %}eval{% else %}echo{% endif %} {{ p }}",
        "sh -c {{ p }}",
        "bash -ec \"{{ p }}\"",
    ] {
        assert_eq!(contexts(script), [Refused(super::scan::AS_CODE)], "{script}");
    }
    for script in ["printf -v{{ p }} %s x", "wait -n -p {{ p }}"] {
        assert_eq!(contexts(script), [Refused(super::scan::AS_NAME)], "{script}");
    }
    // Non-ASCII text anywhere is no trouble.
    assert_eq!(contexts("./undeplo￼੍{ x }} {{ y }}"), [Bare]);
}

/// The second round of attempts at values the shell would run.
#[test]
fn holds_against_tags_redirections_and_wrappers() {
    use super::scan::{AS_CODE, AS_NAME};
    use Context::*;
    let code = Refused(AS_CODE);
    // Template strings holding `}}` or `%}` do not end their tag.
    assert_eq!(contexts("echo {{ \"}} #\" }} {{ p }}"), [Bare, Bare]);
    assert_eq!(contexts("{% set s = \"%}\" %}echo {{ p }}"), [Bare]);
    // A `#` the scanner takes for a comment writes a quoted word all the same.
    assert_eq!(contexts("echo x{% if q %} {% endif %}#{{ p }}"), [Comment]);
    assert_eq!(contexts("echo a\\ #{{ p }}"), [Comment]);
    assert_eq!(contexts("a=(1 #{{ p }}\n)"), [Comment]);
    // Branches that disagree on whether the next word is the command: both readings.
    assert_eq!(contexts("{% if q %}eval {% endif %}echo {{ p }}"), std::slice::from_ref(&code));
    assert_eq!(contexts("{% if q %}let {% endif %}true {{ p }}"), [Arithmetic]);
    assert_eq!(contexts("{% if q %}eval {% endif %}{{ p }} {{ r }}"), [code.clone(), code.clone()]);
    // A loop body that does not end where it began.
    assert_eq!(
        contexts("{% for i in xs %}echo {{ p }}; eval {% endfor %}true"),
        [Refused(super::scan::CONDITIONAL_SHELL)]
    );
    // Tags between an operator and the value.
    for script in
        ["[[ 1 -eq {% if q %}{{ p }}{% endif %} ]]", "[[ 1 -eq {# n #}{{ p }} ]]", "[[ {{ p }} {# x #} -eq 1 ]]"]
    {
        assert_eq!(contexts(script), [Arithmetic], "{script}");
    }
    for script in ["sh -c {% if q %}{{ p }}{% endif %}", "sh -c {# x #} {{ p }}"] {
        assert_eq!(contexts(script), std::slice::from_ref(&code), "{script}");
    }
    assert_eq!(contexts("printf -v {# x #}{{ p }} %s 1"), [Refused(AS_NAME)]);
    // Redirections before the command.
    for script in [">/dev/null eval {{ p }}", "2>/dev/null eval {{ p }}", "<in eval {{ p }}"] {
        assert_eq!(contexts(script), std::slice::from_ref(&code), "{script}");
    }
    assert_eq!(contexts(">out let x={{ p }}"), [Arithmetic]);
    assert_eq!(contexts("echo 2>/dev/null {{ p }} > {{ q }}"), [Bare, Bare]);
    // A shell's code argument, however the shell is reached.
    for script in [
        "exec sh -c {{ p }}",
        "sh -ce {{ p }}",
        "sh -c -- {{ p }}",
        "/bin/sh -c {{ p }}",
        "env A=1 sh -c {{ p }}",
        "timeout 5 bash -c \"{{ p }}\"",
        "alias foo={{ p }}",
    ] {
        assert_eq!(contexts(script), std::slice::from_ref(&code), "{script}");
    }
    assert_eq!(contexts("timeout 5 sh -c 'echo \"$1\"' sh {{ p }}"), [Bare]);
    // `declare -a x=…` reads `(…)` as an array.
    assert_eq!(contexts("declare -a x={{ p }}"), [Declared(Box::new(Bare))]);
}

/// The third round: filters, here-documents the two shells read differently, coprocesses.
#[test]
fn refuses_what_the_shells_read_differently() {
    use super::scan::{AS_CODE, FILTER_BLOCK, SHELLS_DIFFER};
    use Context::*;
    assert_eq!(contexts("echo \"{% filter trim %}{{ p }}{% endfilter %}\""), [Refused(FILTER_BLOCK)]);
    // bash reads `$'EOF'` as `EOF`, dash as `$EOF`.
    assert_eq!(
        contexts("cat > out <<$'EOF'\n{{ p }}\nEOF\necho {{ q }}"),
        [Refused(SHELLS_DIFFER), Refused(SHELLS_DIFFER)]
    );
    // bash ends a here-document in `$( )` at `EOF)`; dash does not.
    assert_eq!(contexts("x=$(cat <<EOF\nhi\nEOF)\necho {{ p }}"), [Refused(SHELLS_DIFFER)]);
    // dash gives a here-document in a `$( )` closed on its line no body.
    assert_eq!(contexts("echo \"$(cat <<EOF)\"\n{{ p }}\nEOF"), [Refused(SHELLS_DIFFER)]);
    assert_eq!(contexts("coproc X { eval {{ p }}; }; wait"), [Refused(AS_CODE)]);
    assert_eq!(contexts("coproc let x={{ p }}"), [Arithmetic]);
    assert_eq!(contexts("coproc { echo {{ p }}; }"), [Bare]);
}

/// Long scripts scan in time proportional to their length (a `[[ ]]` of 20,000 words and
/// a line of 5,000 values took 46 s and 5 s before).
#[test]
fn long_scripts_scan_quickly() {
    let test = format!("[[ {} ]] && echo {{{{ p }}}}", "x ".repeat(20_000));
    assert_eq!(contexts(&test), [Context::Bare]);
    let line = "echo {{ p }} ".repeat(5_000);
    assert_eq!(contexts(&line).len(), 5_000);
}

/// The fourth round: bash expands the word after `>&` again when it is no number.
#[test]
fn refuses_values_after_a_duplicating_redirection() {
    use super::scan::DUP_TARGET;
    use Context::*;
    for script in ["echo a >&{{ p }}", "echo a 1>&\"{{ p }}\"", "echo a >&'{{ p }}'", "echo a >&\"$(echo {{ p }})\""] {
        assert_eq!(contexts(script), [Refused(DUP_TARGET)], "{script}");
    }
    assert_eq!(contexts("echo a >&2 {{ p }}; echo b > {{ q }}; echo c &> {{ r }}"), [Bare, Bare, Bare]);
}

/// A value in what a shell or an interpreter reads as its program (a here-document, a
/// here-string), in a command word written in quotes, or in a prompt variable is code.
#[test]
fn values_in_code_read_from_input_quoted_commands_and_prompts() {
    use super::scan::{AS_CODE, FED_TO_SHELL, PROMPT_CODE};
    use Context::*;
    for script in [
        "bash -s <<OPSBOOK_END\ncd /tmp && echo \"restarting {{ p }}\"\nOPSBOOK_END",
        "bash <<EOF\necho {{ p }}\nEOF",
        "sh <<'EOF'\necho {{ p }}\nEOF",
        "sudo -u app bash -s -- x <<EOF\necho {{ p }}\nEOF",
        "ssh -i key.pem -p 2222 deploy@web1 <<EOF\necho {{ p }}\nEOF",
        "ssh web1 bash -s <<EOF\necho {{ p }}\nEOF",
        "kubectl exec -i pod -- sh <<EOF\necho {{ p }}\nEOF",
        "su - app <<EOF\necho {{ p }}\nEOF",
        "python3 - <<EOF\nprint('{{ p }}')\nEOF",
        "cat <<EOF | sh\necho {{ p }}\nEOF",
        "bash -o pipefail <<EOF\necho {{ p }}\nEOF",
        "sh <<< {{ p }}",
        "bash <<< \"echo {{ p }}\"",
        "bash -s <<EOT\necho hello $(echo {{ p }})\nEOT",
        "ssh deploy@{{ q | lower }} <<EOT\necho {{ p }}\nEOT",
        "bash -s 2>&1 <<EOT\necho {{ p }}\nEOT",
        "ssh web1 > /tmp/log 2>&1 <<EOT\necho {{ p }}\nEOT",
        "ssh -o StrictHostKeyChecking=no \\\n  deploy@web1 <<EOT\necho {{ p }}\nEOT",
        "bash /dev/stdin <<EOT\necho {{ p }}\nEOT",
        "source /dev/stdin <<EOT\necho {{ p }}\nEOT",
        "python3.11 - <<EOT\nprint('{{ p }}')\nEOT",
        "nodejs <<EOT\nconsole.log('{{ p }}')\nEOT",
        "sudo -iu postgres <<EOT\necho {{ p }}\nEOT",
        "ssh web1 sudo -i <<EOT\necho {{ p }}\nEOT",
        "at now + 5 minutes <<EOT\necho {{ p }}\nEOT",
        "$SHELL <<EOT\necho {{ p }}\nEOT",
        "cat <<EOT | tee f | bash\necho {{ p }}\nEOT",
        "cat <<EOT |& bash\necho {{ p }}\nEOT",
        "eval \"$(cat <<EOT\necho {{ p }}\nEOT\n)\"",
    ] {
        let got = contexts(script);
        assert_eq!(got.last(), Some(&Refused(FED_TO_SHELL)), "{script}: {got:?}");
    }
    // Input that is data: to a script file, a remote command, a program that is no shell.
    for script in [
        "bash ./deploy.sh <<EOF\n{{ p }}\nEOF",
        "ssh web1 'cat > /etc/app.conf' <<EOF\n{{ p }}\nEOF",
        "sh -c 'cat > f' <<EOF\n{{ p }}\nEOF",
        "cat > notes.sh <<EOF\n{{ p }}\nEOF",
        "python3 render.py <<EOF\n{{ p }}\nEOF",
        "kubectl apply -f - <<EOF\nname: {{ p }}\nEOF",
        "vault kv put secret/ssh - <<EOF\n{{ p }}\nEOF",
        "cat > /opt/app/bin/node <<EOF\n{{ p }}\nEOF",
        "psql -v ON_ERROR_STOP=1 2>&1 <<EOF\n{{ p }}\nEOF",
    ] {
        assert!(matches!(contexts(script)[..], [Heredoc(_)]), "{script}: {:?}", contexts(script));
    }
    assert_eq!(contexts("grep x <<< {{ p }}"), [Bare]);
    // A command word in quotes or with backslashes is what it spells.
    for script in
        ["\"eval\" echo {{ p }}", "'sh' -c {{ p }}", "e\\val {{ p }}", "s\\h -c {{ p }}", "\"ba\"sh -c {{ p }}"]
    {
        assert_eq!(contexts(script), [Refused(AS_CODE)], "{script}");
    }
    // The variables that name the shell are one; other commands made at run time are not.
    for script in [
        "$SHELL -c {{ p }}",
        "\"$SH\" -c {{ p }}",
        "timeout 5 \"${SHELL}\" -c {{ p }}",
        "script -qc {{ p }} /dev/null",
        "flock /tmp/l -c {{ p }}",
    ] {
        assert_eq!(contexts(script), [Refused(AS_CODE)], "{script}");
    }
    for script in [
        "\"$KUBECTL\" apply -f {{ p }}",
        "\"$KUBECTL\" logs deploy/web -c {{ p }}",
        "$SUDO tar -czf {{ p }} /srv/data",
        "${KUBECTL:-kubectl} exec -i pod -c {{ p }}",
    ] {
        assert_eq!(contexts(script), [Bare], "{script}");
    }
    // An interpreter's program given as a word is code; its arguments are words.
    for script in [
        "python3 -c \"print('{{ p }}')\"",
        "python3.11 -Bc {{ p }}",
        "perl -ne 'print if /{{ p }}/' f",
        "perl -pi -e 's/x/{{ p }}/' f",
        "node -e {{ p }}",
        "nodejs --eval \"{{ p }}\"",
        "ruby -e {{ p }}",
        "php -r {{ p }}",
        "timeout 5 python3 -c {{ p }}",
    ] {
        assert_eq!(contexts(script), [Refused(super::scan::PROGRAM)], "{script}");
    }
    for script in [
        "python3 deploy.py --version {{ p }}",
        "python3 -m http.server {{ p }}",
        "perl -w script.pl {{ p }}",
        "node app.js --port {{ p }}",
        "php -dmemory_limit=1G artisan {{ p }}",
        "sudo -u app python3 manage.py migrate {{ p }}",
    ] {
        assert_eq!(contexts(script), [Bare], "{script}");
    }
    // Assignments bash runs (in command position, or declared), and only those.
    for script in ["PS4='+ [{{ p }}] '; set -x", "export PROMPT_COMMAND={{ p }}", "BASH_ENV=\"{{ p }}\" bash x.sh"] {
        assert_eq!(contexts(script), [Refused(PROMPT_CODE)], "{script}");
    }
    for script in [
        "PS5={{ p }}",
        "MY_ENV={{ p }}",
        "ENV={{ p }} ./deploy.sh",
        "docker run --rm -e ENV={{ p }} app",
        "kubectl set env deployment/web PS4={{ p }}",
    ] {
        assert_eq!(contexts(script), [Bare], "{script}");
    }
}

mod again;
