// Package conf loads Sharpeye's configuration: one YAML file, overlaid on
// compiled defaults and overlaid in turn by SHARPEYE_* environment variables,
// then validated. It knows nothing about Sharpeye's sections; each component
// defines its own section struct next to its code, and a root struct composes
// them.
//
// # Order of precedence
//
// [Load] applies, each over the previous:
//
//  1. the compiled defaults, already in the struct passed to Load;
//  2. the file. It is first checked key by key against the struct's type, and
//     applied only when it has no problems. Unknown keys are errors. Keys left
//     out, and keys with an empty or null value, keep their defaults. A struct
//     in the file is merged field by field into the default one; a map is
//     merged key by key (an entry in the file replaces the default entry of
//     the same key); a sequence in the file replaces the default sequence
//     entirely;
//  3. the environment (see below);
//  4. validation: every section implementing [Validator] checks itself,
//     children before parents.
//
// Every problem found is reported, not only the first, as [Errors]. Problems
// in the file skip the later steps except the environment; problems in the
// environment skip validation.
//
// # Environment variables
//
// Each scalar key reachable from the top through mappings only (not through
// sequences or maps) can be set by a variable named SHARPEYE_ followed by its
// keys in upper case joined by "_", with any character other than a letter or
// a digit replaced by "_": http.listen is SHARPEYE_HTTP_LISTEN and
// casedb.max_open is SHARPEYE_CASEDB_MAX_OPEN. The value is read as a YAML
// scalar of the key's type. A sequence of scalars is given as a
// comma-separated list, which replaces the whole sequence. An empty variable
// counts as unset. Setting a key inside a section whose default is absent (a
// nil pointer) creates the section with zero values. Unknown SHARPEYE_*
// variables are ignored, as other programs share the prefix. [EnvNames] lists
// the names.
//
// # Key paths
//
// Errors name the key they concern by its path: keys of mappings joined by
// ".", sequence items as [i] counting from 0, and map keys that are not plain
// identifiers (^[A-Za-z_][A-Za-z0-9_-]*$) as ["key"]:
//
//	http.listen
//	cameras[2].url
//	sites["front door"].zone
//
// Errors from the environment name the variable and the path:
// $SHARPEYE_HTTP_LISTEN (http.listen). An error is printed with its line in
// the file when the key appears there:
//
//	cameras[2].url (line 14): scheme must be rtsp or rtsps
//
// # Field names
//
// Keys come from the yaml struct tags as in gopkg.in/yaml.v3: `yaml:"name"`,
// the lowercased field name when there is no tag, `yaml:"-"` to skip a field,
// `yaml:",inline"` to flatten a struct into its parent (or to collect unknown
// keys in a map); omitempty is ignored.
//
// # Types
//
// [Duration] is written "10s", "1m30s" or "250ms". [Secret] holds passwords
// and DSNs and prints as "<redacted>" everywhere, including [Marshal]'s
// output. Any type implementing encoding.TextUnmarshaler or yaml.Unmarshaler
// is read by its own method, and its errors are reported at its path.
package conf
