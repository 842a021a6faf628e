package doccheck

import (
	"os/exec"
	"testing"
)

// TestGitignoreCoversDefaults: what consentd and the walkthroughs write in
// the directory they are run from never shows in git status, above all a
// secret that `git add .` would commit.
func TestGitignoreCoversDefaults(t *testing.T) {
	for _, p := range []string{
		"consentd-data/consent.db", "consentd-data/secret", // consentd's default --data-dir
		"consentd.secret",             // the Redis walkthrough's secret
		".bin/consentd", "consentctl", // scripts/run; go build ./cmd/consentctl in the root
		"certs/ca-key.pem", "tokens.txt", "consentd.log", // docs/security.md
		"outbox.mbox", "recipients.csv", "allowed.csv", // docs/senders.md
		"crm.csv", "crm.csv.report/rejects.csv", "erase.txt", // docs/migrating.md
		"appendonlydir/appendonly.aof.1.base.rdb", // redis-server of docs/deploying-redis.md
	} {
		cmd := exec.Command("git", "check-ignore", "--no-index", "-q", p)
		cmd.Dir = root
		if err := cmd.Run(); err != nil {
			t.Errorf(".gitignore does not cover %s (git check-ignore: %v)", p, err)
		}
	}
}
