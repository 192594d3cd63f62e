//! JSON has no NaN and no infinity, and serde_json writes them as `null`
//! without a word: a message holding `f64::NAN` would arrive as `null`.
//! [`check`] finds such a number before anything is encoded, and says
//! where it is.
//!
//! It walks the value with a serializer that writes nothing. The path is
//! only worked out once a number is found: a second walk keeps track of
//! it, so that the common case pays for one walk and no allocation.
//!
//! ```
//! use shoal::wire::finite::{check, NotFinite};
//!
//! assert_eq!(check("data", &serde_json::json!({"a": [1.5, null]})), Ok(()));
//! let err = check("data", &vec![(1, f64::NAN)]).unwrap_err();
//! assert_eq!(err.path, "data[0][1]");
//! assert!(err.value.is_nan());
//! ```

use std::fmt;

use serde::ser::{self, Serialize};

/// A number JSON cannot carry (NaN, or an infinity), and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct NotFinite {
    /// Where it is, from the root name given to [`check`]: `data`,
    /// `data.load`, `data.samples[2]`, `data["a b"]`.
    pub path: String,
    /// The number (an `f32` is widened).
    pub value: f64,
}

/// Finds the first NaN or infinity in `value` (in serialization order),
/// if any. `root` names the value in [`NotFinite::path`]. A value that
/// cannot be serialized at all passes: encoding it reports that.
pub fn check<T: Serialize + ?Sized>(root: &str, value: &T) -> Result<(), NotFinite> {
    let found = match value.serialize(&mut Walker::default()) {
        Err(Stop::NotFinite(value)) => value,
        Ok(()) | Err(Stop::Other) => return Ok(()),
    };
    let mut walker = Walker {
        path: Some(Vec::new()),
    };
    let path = match value.serialize(&mut walker) {
        Err(Stop::NotFinite(_)) => walker.path.unwrap_or_default(),
        // A value that serializes differently the second time: no path.
        _ => Vec::new(),
    };
    let mut text = root.to_owned();
    for step in path {
        step.write(&mut text);
    }
    Err(NotFinite {
        path: text,
        value: found,
    })
}

/// One step down into a value.
enum Step {
    /// A struct field, an enum variant, or a map key.
    Name(String),
    /// A sequence or tuple element.
    Index(usize),
}

impl Step {
    fn write(self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            Step::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
            Step::Name(name) if is_identifier(&name) => {
                out.push('.');
                out.push_str(&name);
            }
            Step::Name(name) => {
                let quoted = serde_json::to_string(&name).unwrap_or_default();
                let _ = write!(out, "[{quoted}]");
            }
        }
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a walk stopped.
#[derive(Debug)]
enum Stop {
    NotFinite(f64),
    /// The value's own `Serialize` failed.
    Other,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stopped")
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop::Other
    }
}

/// A serializer that writes nothing and stops at the first non-finite
/// number; with `path`, it keeps the steps down to where it is.
#[derive(Default)]
struct Walker {
    path: Option<Vec<Step>>,
}

impl Walker {
    fn number(&self, value: f64) -> Result<(), Stop> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(Stop::NotFinite(value))
        }
    }

    /// Walks `value` one step down; the step stays on the path if the walk stops there.
    fn enter<T: Serialize + ?Sized>(
        &mut self,
        step: impl FnOnce() -> Step,
        value: &T,
    ) -> Result<(), Stop> {
        if let Some(path) = &mut self.path {
            path.push(step());
        }
        value.serialize(&mut *self)?;
        if let Some(path) = &mut self.path {
            path.pop();
        }
        Ok(())
    }

    fn push(&mut self, step: impl FnOnce() -> Step) {
        if let Some(path) = &mut self.path {
            path.push(step());
        }
    }

    fn pop(&mut self) {
        if let Some(path) = &mut self.path {
            path.pop();
        }
    }
}

/// A map key as JSON would show it (only computed on the second walk).
fn key_name<T: Serialize + ?Sized>(key: &T) -> String {
    match serde_json::to_value(key) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// The walk through a sequence, map, struct or variant.
struct Compound<'a> {
    walker: &'a mut Walker,
    index: usize,
    /// Steps to pop at the end (the variant name of a tuple or struct variant).
    pushed: bool,
    /// The name of the map key whose value comes next.
    key: Option<String>,
}

impl<'a> Compound<'a> {
    fn new(walker: &'a mut Walker, pushed: bool) -> Self {
        Compound {
            walker,
            index: 0,
            pushed,
            key: None,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        let i = self.index;
        self.index += 1;
        self.walker.enter(|| Step::Index(i), value)
    }

    fn end(self) -> Result<(), Stop> {
        if self.pushed {
            self.walker.pop();
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for &'a mut Walker {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_f32(self, v: f32) -> Result<(), Stop> {
        self.number(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Stop> {
        self.number(v)
    }
    fn serialize_bool(self, _: bool) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Stop> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        // serde_json writes {"variant": value}.
        self.enter(|| Step::Name(variant.to_owned()), value)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Stop> {
        Ok(Compound::new(self, false))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Stop> {
        Ok(Compound::new(self, false))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Stop> {
        Ok(Compound::new(self, false))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Stop> {
        self.push(|| Step::Name(variant.to_owned()));
        Ok(Compound::new(self, true))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Stop> {
        Ok(Compound::new(self, false))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Stop> {
        Ok(Compound::new(self, false))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Stop> {
        self.push(|| Step::Name(variant.to_owned()));
        Ok(Compound::new(self, true))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        self.element(value)
    }
    fn end(self) -> Result<(), Stop> {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        self.element(value)
    }
    fn end(self) -> Result<(), Stop> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        self.element(value)
    }
    fn end(self) -> Result<(), Stop> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        self.element(value)
    }
    fn end(self) -> Result<(), Stop> {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Stop> {
        // Keys are strings in JSON (serde_json refuses float keys that are
        // not finite, so they need no check here).
        if self.walker.path.is_some() {
            self.key = Some(key_name(key));
        }
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        let key = self.key.take().unwrap_or_default();
        self.walker.enter(|| Step::Name(key), value)
    }
    fn end(self) -> Result<(), Stop> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.walker.enter(|| Step::Name(name.to_owned()), value)
    }
    fn end(self) -> Result<(), Stop> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.walker.enter(|| Step::Name(name.to_owned()), value)
    }
    fn end(self) -> Result<(), Stop> {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    struct Reading {
        sensor: &'static str,
        samples: Vec<f32>,
        extra: Option<Box<Reading>>,
    }

    #[derive(serde::Serialize)]
    enum Shape {
        Point(f64, f64),
        Circle { r: f64 },
        Scale(f64),
    }

    fn path_of<T: Serialize + ?Sized>(value: &T) -> Option<(String, String)> {
        check("data", value)
            .err()
            .map(|e| (e.path, e.value.to_string()))
    }

    #[test]
    fn finite_values_pass() {
        for v in [0.0, -0.0, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 1e-320] {
            assert_eq!(check("data", &v), Ok(()));
        }
        assert_eq!(check("data", &f32::MAX), Ok(()));
        assert_eq!(
            check(
                "data",
                &serde_json::json!({"a": [1, "x", null, {"b": 2.5}]})
            ),
            Ok(())
        );
        assert_eq!(check("data", "text"), Ok(()));
        assert_eq!(check("data", &()), Ok(()));
    }

    #[test]
    fn every_non_finite_number_is_found_and_placed() {
        let s = |a: &str, b: &str| Some((a.to_owned(), b.to_owned()));
        assert_eq!(path_of(&f64::NAN), s("data", "NaN"));
        assert_eq!(path_of(&f64::INFINITY), s("data", "inf"));
        assert_eq!(path_of(&f64::NEG_INFINITY), s("data", "-inf"));
        assert_eq!(path_of(&f32::NAN), s("data", "NaN"));
        assert_eq!(path_of(&f32::NEG_INFINITY), s("data", "-inf"));
        assert_eq!(path_of(&Some(f64::NAN)), s("data", "NaN"));
        assert_eq!(path_of(&[1.0, 2.0, f64::NAN]), s("data[2]", "NaN"));
        let nested = Reading {
            sensor: "t",
            samples: vec![1.0],
            extra: Some(Box::new(Reading {
                sensor: "u",
                samples: vec![2.0, f32::INFINITY],
                extra: None,
            })),
        };
        assert_eq!(path_of(&nested), s("data.extra.samples[1]", "inf"));
        let mut map = BTreeMap::new();
        map.insert("ok", vec![1.0]);
        map.insert("load avg", vec![0.5, f64::NAN]);
        assert_eq!(path_of(&map), s("data[\"load avg\"][1]", "NaN"));
        let mut by_number = BTreeMap::new();
        by_number.insert(7, f64::NAN);
        assert_eq!(path_of(&by_number), s("data[\"7\"]", "NaN"));
        assert_eq!(
            path_of(&Shape::Point(0.0, f64::NAN)),
            s("data.Point[1]", "NaN")
        );
        assert_eq!(
            path_of(&Shape::Circle { r: f64::INFINITY }),
            s("data.Circle.r", "inf")
        );
        assert_eq!(path_of(&Shape::Scale(f64::NAN)), s("data.Scale", "NaN"));
        // The first in serialization order is reported.
        assert_eq!(path_of(&(f64::INFINITY, f64::NAN)), s("data[0]", "inf"));
    }

    #[test]
    fn values_that_cannot_be_serialized_are_left_to_the_encoder() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom("no"))
            }
        }
        assert_eq!(check("data", &Fails), Ok(()));
    }
}
