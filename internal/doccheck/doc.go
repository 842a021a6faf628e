// Package doccheck holds the tests that keep the README and docs/ true
// where no session runs them: every relative link resolves inside the
// repository and none leads out of it, every console session is run by a
// test, docs/architecture.md places every package and names only paths
// that exist, and each page of measured figures says which commit and date
// they come from. It has no code of its own.
package doccheck
