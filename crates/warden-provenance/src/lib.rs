//! Value-level provenance: extract the salient values of content (addresses, URLs, IBANs, numbers,
//! paths, names, shingles of free text) and index them per session, so that each argument of a call
//! can be traced to the sources its values occur in.

mod canon;
mod extract;
mod index;
mod secrets;
mod segment;

pub use canon::canonical;
pub use extract::{extract, extract_json, Kind, Salient};
pub use index::{carried_key, ArgKeys, IndexConfig, ProvenanceIndex};
pub use secrets::{
    assignment as secret_assignment, secret_key_name, secrets_in, shapes as secret_shapes,
    Shape as SecretShape,
};
pub use segment::{field_values, json_field_values};
