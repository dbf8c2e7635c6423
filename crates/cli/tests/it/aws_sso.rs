//! Credentials from IAM Identity Center (SSO): a profile with an `sso_session`, the
//! sign-in token in the SSO cache (as `aws sso login` leaves it), and the portal's
//! GetRoleCredentials answered by a double speaking its protocol.

use opsbook_doubles::lambda::Function;
use opsbook_doubles::sso::{self, Sso};
use serde_json::json;

use crate::aws_steps::Aws;
use crate::support::{Env, out, runbook};

const CONFIG: &str = "[profile ops]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = Deployer\n\
    region = eu-west-2\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n";

/// What `aws sso login --sso-session corp` leaves in `~/.aws/sso/cache`: the token, in a
/// file named by the SHA-1 of the session's name.
fn signed_in(env: &Env, token: &str) {
    let sha1 = std::process::Command::new("sh").args(["-c", "printf corp | sha1sum"]).output().expect("sha1sum");
    let name = String::from_utf8(sha1.stdout).unwrap().split_whitespace().next().expect("a digest").to_string();
    let cached = json!({
        "accessToken": token,
        "expiresAt": "2099-01-01T00:00:00Z",
        "region": "eu-west-1",
        "startUrl": "https://corp.awsapps.com/start",
    });
    env.write(&format!("home/.aws/sso/cache/{name}.json"), &cached.to_string());
}

/// Runs two Lambda steps with profile `ops`, only SSO to get credentials from.
fn run(aws: &Aws, portal: &Sso, env: &Env) -> crate::support::Out {
    let config = env.write("aws-config", CONFIG);
    env.write(
        "test.yaml",
        &runbook("", "    - id: one\n      aws_lambda: { function: check }\n    - id: two\n      aws_lambda: { function: check }\n"),
    );
    let mut cmd = aws.cmd(env, &["run", "test.yaml"]);
    cmd.env("AWS_PROFILE", "ops")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_ENDPOINT_URL_SSO", &portal.url)
        .env("HOME", env.path("home"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION");
    out(cmd.output().unwrap())
}

#[test]
fn an_sso_profile_signs_the_calls_with_the_role_s_credentials() {
    let aws = Aws::start(&[("check", Function::returning(json!({ "ok": true })))]);
    let portal = Sso::start(sso::Script {
        tokens: vec![("sso-token-1".into(), vec![("111122223333".into(), "Deployer".into())])],
        ..Default::default()
    });
    let env = Env::new();
    signed_in(&env, "sso-token-1");
    let o = run(&aws, &portal, &env);
    assert_eq!(o.code, 0, "{o:?}");
    let asked = portal.calls();
    assert_eq!(asked.len(), 1, "the role's credentials are kept until they expire: {asked:?}");
    assert_eq!((asked[0].account_id.as_str(), asked[0].role_name.as_str()), ("111122223333", "Deployer"));
    assert_eq!(asked[0].token.as_deref(), Some("sso-token-1"), "with the cached sign-in token");
    let calls = aws.lambda.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for c in &calls {
        assert_eq!(c.access_key.as_deref(), Some("ASIASSODOUBLE000001"), "signed with the role's keys");
        assert_eq!(c.region.as_deref(), Some("eu-west-2"), "in the profile's region");
    }
}

#[test]
fn a_sign_in_the_portal_refuses_fails_the_step_and_calls_nothing() {
    let aws = Aws::start(&[("check", Function::returning(json!({ "ok": true })))]);
    let portal = Sso::start(sso::Script::default());
    let env = Env::new();
    signed_in(&env, "sso-token-expired-on-the-portal");
    let o = run(&aws, &portal, &env);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(aws.lambda.calls().is_empty(), "nothing is called unsigned");
    assert_eq!(portal.calls().len(), 1);
    let why = "step `one` failed: no AWS credentials (environment, profile, SSO, web identity, container or \
               instance role): UnauthorizedException: Session token not found or invalid (sign in again: `aws sso login`)";
    assert!(o.stdout.contains(why), "{o:?}");
}
