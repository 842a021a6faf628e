package daemon

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// A Config printed, or logged, never shows the Redis password.
func TestPasswordNeverPrinted(t *testing.T) {
	c := DefaultConfig()
	c.RedisPassword = "hunter2"
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "password", c.RedisPassword, "config", c)
	for _, tc := range []struct{ name, got string }{
		{"%v", fmt.Sprintf("%v", c)},
		{"%+v", fmt.Sprintf("%+v", c)},
		{"%#v", fmt.Sprintf("%#v", c)},
		{"%s of the password", fmt.Sprintf("%s", c.RedisPassword)},
		{"slog", logs.String()},
	} {
		if strings.Contains(tc.got, "hunter2") {
			t.Errorf("%s shows the password: %s", tc.name, tc.got)
		}
	}
	if got, want := fmt.Sprint(c.RedisPassword), "[set]"; got != want {
		t.Errorf("a set password prints %q, want %q", got, want)
	}
	if got := fmt.Sprint(Password("")); got != "" {
		t.Errorf("an unset password prints %q, want nothing", got)
	}
}
