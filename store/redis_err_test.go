package store_test

import (
	"errors"
	"testing"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/store"
)

// Redis errors that mean "not now" are UNAVAILABLE, never an answer and
// never an internal error; others stay what they are.
func TestRedisErrUnavailable(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		{"MOVED 13907 127.0.0.1:43269", true},
		{"ASK 13907 127.0.0.1:43269", true},
		{"TRYAGAIN Multiple keys request during rehashing of slot", true},
		{"CLUSTERDOWN The cluster is down", true},
		{"LOADING Redis is loading the dataset in memory", true},
		{"ERR unknown command", false},
		{"WRONGTYPE Operation against a key holding the wrong kind of value", false},
	} {
		if got := errors.Is(store.RedisErr(errors.New(tc.msg)), consent.ErrUnavailable); got != tc.want {
			t.Errorf("%q: unavailable %v, want %v", tc.msg, got, tc.want)
		}
	}
}
