package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/contactkey"
	"github.com/consentd/consentd/store"
)

// startRedis runs redis-server from PATH on a free loopback port with the
// settings consentd relies on, in dir; stop ends it by PID.
func startRedis(ctx context.Context, dir string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no")
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting redis-server (install Debian's redis-server): %w", err)
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	addr = "127.0.0.1:" + strconv.Itoa(port)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	deadline := time.Now().Add(20 * time.Second)
	for rdb.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s did not answer", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr, stop, nil
}

func redisClient(url string) (*redis.Client, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	if pw := os.Getenv("CONSENTD_REDIS_PASSWORD"); pw != "" {
		o.Password = pw
	}
	return redis.NewClient(o), nil
}

// directRead is what a sender does without consentd: key the contact and
// read its record from Redis itself (it would still have to decide).
func directRead(ctx context.Context, rdb *redis.Client, keys *contactkey.Keyer, partitions uint32, contacts *bench.Contacts) error {
	k, err := keys.Key(contacts.Next())
	if err != nil {
		return err
	}
	err = rdb.Get(ctx, store.RecordKey(partitions, k)).Err()
	if err == redis.Nil {
		return nil
	}
	return err
}
