package daemon

import "testing"

// TestMigrateCommand: the command consentd names when it refuses an
// unmigrated store carries this consentd's store flags (never a
// password), quoted for a shell where they need it.
func TestMigrateCommand(t *testing.T) {
	base := DefaultConfig()
	with := func(f func(*Config)) Config { c := base; f(&c); return c }
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"embedded", with(func(c *Config) { c.DataDir, c.SecretFile = "/srv/consentd", "/srv/consentd/secret" }),
			"consentctl migrate --data-dir /srv/consentd --contacts FILE"},
		{"embedded, secret elsewhere", with(func(c *Config) { c.DataDir, c.SecretFile = "/srv/my data", "/etc/consentd.secret" }),
			"consentctl migrate --data-dir '/srv/my data' --secret-file /etc/consentd.secret --contacts FILE"},
		{"redis", with(func(c *Config) {
			c.RedisURL, c.SecretFile, c.RedisPassword = "redis://10.0.0.5:6379/0", "/etc/consentd.secret", "hunter2"
		}), "consentctl migrate --redis redis://10.0.0.5:6379/0 --secret-file /etc/consentd.secret --contacts FILE"},
		{"cluster, password file, partitions", with(func(c *Config) {
			c.RedisCluster, c.SecretFile, c.RedisPasswordFile, c.Partitions = "10.0.0.5:7000,10.0.0.6:7000", "/s", "/etc/redis.pw", 1024
		}), "consentctl migrate --redis-cluster 10.0.0.5:7000,10.0.0.6:7000 --redis-password-file /etc/redis.pw --secret-file /s --partitions 1024 --contacts FILE"},
		{"sentinel, default region", with(func(c *Config) { c.RedisSentinel, c.SecretFile, c.DefaultRegion = "m@10.0.0.5:26379", "/s", "GB" }),
			"consentctl migrate --redis-sentinel m@10.0.0.5:26379 --secret-file /s --default-region GB --contacts FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MigrateCommand(tt.c); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
