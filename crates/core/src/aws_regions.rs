//! The AWS regions opsbook knows: every region of every partition in the AWS SDK's
//! partition data (`partitions.json`, as aws-sdk-* 1.12x embed it), so that a region
//! shaped like a real one (`us-east-7`) is refused with a did-you-mean rather than
//! failing later, at a call, with a DNS error. A region added by AWS after this list
//! needs a newer opsbook.

/// Region codes by partition: aws, aws-cn, aws-eusc, aws-iso, aws-iso-b, aws-iso-e,
/// aws-iso-f, aws-us-gov.
pub const REGIONS: &[&str] = &[
    // aws
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    // aws-cn
    "cn-north-1",
    "cn-northwest-1",
    // aws-eusc
    "eusc-de-east-1",
    // aws-iso, aws-iso-b, aws-iso-e, aws-iso-f
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-isob-west-1",
    "eu-isoe-west-1",
    "us-isof-east-1",
    "us-isof-south-1",
    // aws-us-gov
    "us-gov-east-1",
    "us-gov-west-1",
];

/// Checks that `region` is a known AWS region; an unknown one is named with the closest
/// known region when it looks like a typo.
pub fn check_region(region: &str) -> Result<(), String> {
    if REGIONS.contains(&region) {
        return Ok(());
    }
    Err(match crate::diagnostic::did_you_mean(&region.to_ascii_lowercase(), REGIONS) {
        Some(m) => format!("unknown AWS region `{region}` (did you mean `{m}`?)"),
        None => format!("unknown AWS region `{region}` (e.g. us-east-1, eu-west-2)"),
    })
}

/// The region of an availability zone name: `us-east-1b` → `us-east-1`,
/// `us-west-2-lax-1a` (a Local Zone) → `us-west-2`, `us-gov-west-1a` → `us-gov-west-1`.
pub fn region_of_zone(zone: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in zone.split('-') {
        let digits = part.len() - part.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            parts.push(&part[..digits]);
            return Some(parts.join("-"));
        }
        parts.push(part);
    }
    None
}

/// Checks an availability zone name (`us-east-1a`, or a Local Zone's `us-west-2-lax-1a`)
/// and returns its region, which must be a known one.
pub fn check_zone(zone: &str) -> Result<String, String> {
    let shape = "an availability zone name such as us-east-1a";
    let region = region_of_zone(zone).ok_or_else(|| format!("`{zone}` is not {shape}"))?;
    check_region(&region).map_err(|e| format!("availability zone `{zone}`: {e}"))?;
    let rest = &zone[region.len()..];
    let local = rest
        .strip_prefix('-')
        .is_some_and(|r| r.len() > 1 && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    let single = rest.len() == 1 && rest.bytes().all(|b| b.is_ascii_lowercase());
    if (single || local) && rest.ends_with(|c: char| c.is_ascii_lowercase()) {
        Ok(region)
    } else {
        Err(format!("`{zone}` is not {shape}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_name_known_regions() {
        for (zone, region) in
            [("us-east-1b", "us-east-1"), ("us-west-2-lax-1a", "us-west-2"), ("us-gov-west-1a", "us-gov-west-1")]
        {
            assert_eq!(check_zone(zone).as_deref(), Ok(region), "{zone}");
        }
        assert_eq!(
            check_zone("us-east-7b"),
            Err("availability zone `us-east-7b`: unknown AWS region `us-east-7` (did you mean `us-east-1`?)".into())
        );
        for bad in ["use1-az1", "us-east-1", "us-east-1ab", "us-east-1-"] {
            assert_eq!(check_zone(bad), Err(format!("`{bad}` is not an availability zone name such as us-east-1a")));
        }
    }

    #[test]
    fn known_regions_pass_and_lookalikes_get_a_hint() {
        for ok in ["us-east-1", "eu-central-2", "us-gov-west-1", "cn-north-1", "ap-southeast-7", "eusc-de-east-1"] {
            assert_eq!(check_region(ok), Ok(()), "{ok}");
        }
        for (bad, hint) in [
            ("us-east-7", "us-east-1"),
            ("us-east1", "us-east-1"),
            ("eu-wset-1", "eu-west-1"),
            ("US-EAST-1", "us-east-1"),
        ] {
            assert_eq!(check_region(bad), Err(format!("unknown AWS region `{bad}` (did you mean `{hint}`?)")));
        }
        for bad in ["moon", "", "x"] {
            assert_eq!(check_region(bad), Err(format!("unknown AWS region `{bad}` (e.g. us-east-1, eu-west-2)")));
        }
    }
}
