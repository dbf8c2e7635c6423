//! Why a value is refused where it is: each message says what to write instead.

pub(in crate::shell) const IN_BACKQUOTES: &str =
    "inside backquotes `…` a value cannot be quoted safely: write $( … ) instead";
pub(in crate::shell) const AFTER_BACKSLASH: &str =
    "a backslash right before {{ … }} would quote the first character of the value: remove it";
pub(in crate::shell) const AFTER_DOLLAR: &str =
    "a `$` right before {{ … }} would make the shell read the value as code or a variable name: remove it";
pub(in crate::shell) const IN_PARAMETER: &str =
    "inside ${…} a value cannot be quoted safely: set a variable first (X={{ … }}) and use ${X…}";
pub(in crate::shell) const AS_NAME: &str = "here a value would be a variable name, which bash evaluates (`a[$(cmd)]` runs \
     cmd): write the name in the script";
pub(in crate::shell) const AS_CODE: &str = "`eval`, `trap` and `sh -c` run these words as shell code, so a value there would \
     be run: pass it as an argument of the code instead (sh -c 'deploy \"$1\"' sh {{ … }})";
pub(in crate::shell) const CONDITIONAL_SHELL: &str = "the {% %} block before this opens or closes shell syntax (a quote, a \
     here-document, a comment, `$( )`, `case`) in one branch and not in another, so where the values after it land \
     cannot be told: keep such syntax whole inside each branch, or outside the block";
pub(in crate::shell) const TRIMMING: &str = "a `-` in a template tag ({%- … -%}, {{- … -}}) removes the spaces and line breaks \
     beside it, which changes how the shell reads the script: write the tag without `-`";
pub(in crate::shell) const TAG_AS_DELIMITER: &str =
    "a here-document's delimiter cannot come from a template tag: write the delimiter in the script";
pub(in crate::shell) const TAG_ON_DELIMITER_LINE: &str =
    "a template tag on a here-document's delimiter line may end it or not: write that line plainly";
pub(in crate::shell) const ANSI_C_QUOTE: &str =
    "`\\'` inside $'…' ends the quote in sh (dash) but not in bash: write \\x27 for the quote instead";
pub(in crate::shell) const CONTINUATION: &str = "a line continuation (`\\` at the end of a line) inside a word cannot be \
     followed: break the line between words";
pub(in crate::shell) const FILTER_BLOCK: &str = "a {% filter %} block changes the text of the values in it after they are \
     written for the shell: apply the filter inside {{ … }} instead";
pub(in crate::shell) const SHELLS_DIFFER: &str = "sh (dash) and bash read this here-document differently (a $'…' delimiter, a \
     delimiter followed by `)`, or `$( … <<EOF)` closed on the operator's line): write it plainly";
pub(in crate::shell) const DUP_TARGET: &str = "after `>&` bash expands a word that is no file descriptor a second time, \
     running a `$( … )` in the value: redirect to a file with `>` or `&>` instead";
pub(in crate::shell) const FED_TO_SHELL: &str = "this here-document (or here-string) is read by a shell or an interpreter \
     (`bash -s <<EOF`, `ssh HOST <<EOF`, `… | sh`) as code, so a value in it would be run: pass the value as an \
     argument (bash -s -- {{ … }} <<'EOF' … \"$1\" … EOF) or in the environment (env: in the step)";
pub(in crate::shell) const PROGRAM: &str = "an interpreter runs this word as its program (`python3 -c`, `perl -e`, `node -e`, \
     `ruby -e`, `php -r`), so a value there would be run: pass it as an argument of the program instead \
     (python3 -c 'import sys; print(sys.argv[1])' {{ … }})";
pub(in crate::shell) const PROMPT_CODE: &str = "bash expands PS0, PS1, PS2, PS4 and PROMPT_COMMAND as code when it uses them \
     (PS4 on every traced line), and runs the file BASH_ENV names: set them without values";
pub(in crate::shell) const BUILT_WORD: &str = "{% %} logic builds part of the word this value is in, so what the word is \
     cannot be told: give the value a word of its own";
pub(in crate::shell) const SSH_CONFIG: &str = "ssh reads the argument of `-o` as a line of configuration, where \
     ProxyCommand, LocalCommand and the like run commands: write the option in the script, or pass the value with an \
     option of its own (-p {{ … }}, -i {{ … }}, -l {{ … }})";
pub(in crate::shell) const AWK_PROGRAM: &str = "awk runs this word as its program, where `system()` and `| getline` \
     run commands, so a value there would be run: pass it in the environment, exactly as it is (env: { V: \"{{ … }}\" } \
     in the step, then ENVIRON[\"V\"] in the program), or with -v (awk -v v={{ … }} '{ print v }'), which reads \
     backslash escapes in it";
pub(in crate::shell) const ANSI_C_AGAIN: &str = "a value after bash's $'…' quoting in a command line that another \
     shell reads again (ssh's remote command, GIT_SSH_COMMAND…) cannot be placed: write that part with '…' or \"…\"";
pub(in crate::shell) const BLOCK_AGAIN: &str = "a {% %} block in a command line that another shell reads again \
     (ssh's remote command, GIT_SSH_COMMAND…) has quotes or `$` after it, so where this value lands in that line \
     cannot be told: keep the quotes whole in each branch, or build the line in a variable first";
pub(in crate::shell) const HEREDOC_AGAIN: &str = "a value in a here-document inside a command line that another shell \
     reads again (ssh's remote command) cannot be placed safely: send the document as ssh's input instead";
pub(in crate::shell) const APPENDED_AGAIN: &str = "a value appended (+=) to a variable that holds a command line \
     (GIT_SSH_COMMAND, PAGER…) cannot be placed: what the line holds already is not known here; assign it whole";
pub(in crate::shell) const SSH_FLAGS: &str = "a value glued to ssh's flags would be read as more flags \
     (-oProxyCommand=… runs a command): give it a word of its own, after an option that takes it (-p {{ … }})";
pub(in crate::shell) const SUBSTITUTED_AGAIN: &str = "the output of this $( … ) is read as code, or again by another \
     shell (eval, sh -c, ssh's remote command, GIT_SSH_COMMAND…), unquoted there whatever the value holds: give the \
     value itself (template filters can shape it), or quote the output for that shell (printf %q)";
pub(in crate::shell) const COPY_PROGRAM: &str = "scp runs the argument of `-S` as its ssh, and rsync sends \
     --rsync-path and -M/--remote-option to the remote shell, so a value there would be run: write the program in the \
     script";
pub(in crate::shell) const COPY_FLAGS: &str = "a value glued to scp's or rsync's flags, or in an option's name, \
     would be read as options (-oProxyCommand=…, -e… run commands): give it a word of its own, after the option that \
     takes it (-P {{ … }}, --backup-dir={{ … }})";
