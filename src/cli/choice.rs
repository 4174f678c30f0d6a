//! Library enums offered on the command line by name. The library's types (`tuf`,
//! `keys`) know nothing of clap; the CLI names each value and says what it means here,
//! and [`choice`] turns that into a parser with the values listed in `--help`.

use std::marker::PhantomData;

use clap::builder::{PossibleValue, TypedValueParser};
use tufkey::tuf::KeyType;

/// A library type the CLI offers as a fixed set of names.
pub trait Choice: Copy + Send + Sync + 'static {
    /// Every value, in the order `--help` lists them.
    const ALL: &'static [Self];
    /// The name typed on the command line.
    fn name(self) -> &'static str;
    /// One line for `--help`.
    fn help(self) -> &'static str;
}

impl Choice for KeyType {
    const ALL: &'static [KeyType] = &[
        KeyType::EcdsaP256,
        KeyType::Ed25519,
        KeyType::Rsa3072,
        KeyType::Rsa2048,
    ];

    fn name(self) -> &'static str {
        self.as_str()
    }

    fn help(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ECDSA on NIST P-256 with SHA-256 (TUF `ecdsa-sha2-nistp256`)",
            KeyType::Ed25519 => "Ed25519 (TUF `ed25519`)",
            KeyType::Rsa3072 => "RSA 3072 with PSS/SHA-256 (TUF `rsassa-pss-sha256`)",
            KeyType::Rsa2048 => {
                "RSA 2048 with PSS/SHA-256: the largest RSA key a YubiKey PIV slot takes here"
            }
        }
    }
}

/// The clap parser for a [`Choice`]: `#[arg(value_parser = choice::<KeyType>())]`.
pub fn choice<T: Choice>() -> ChoiceParser<T> {
    ChoiceParser(PhantomData)
}

/// See [`choice`].
#[derive(Clone)]
pub struct ChoiceParser<T>(PhantomData<T>);

impl<T: Choice> TypedValueParser for ChoiceParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let names = T::ALL.iter().map(|v| PossibleValue::new(v.name()));
        let parser = clap::builder::PossibleValuesParser::new(names);
        let name = parser.parse_ref(cmd, arg, value)?;
        T::ALL
            .iter()
            .copied()
            .find(|v| v.name() == name)
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            T::ALL
                .iter()
                .map(|v| PossibleValue::new(v.name()).help(v.help())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[arg(long = "type", value_parser = choice::<KeyType>())]
        key_type: KeyType,
    }

    #[test]
    fn key_types_parse_by_their_cli_names_and_others_are_refused_listing_them() {
        for t in KeyType::ALL {
            let a = Args::try_parse_from(["x", "--type", t.name()]).unwrap();
            assert_eq!(a.key_type, *t);
        }
        let err = Args::try_parse_from(["x", "--type", "dsa"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("dsa") && err.contains("ecdsa-p256") && err.contains("rsa-2048"),
            "{err}"
        );
    }
}
