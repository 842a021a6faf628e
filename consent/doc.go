// Package consent is the vocabulary and the rules of consentd: contact keys,
// purposes, consent events, per-contact records, tokens, and Decide, the pure
// function that turns a record into an answer. Every rule of consent lives here
// and nowhere else, so the server, the importer and the tests cannot disagree.
//
// The package imports only the standard library.
package consent
