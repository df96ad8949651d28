package tickets

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSecrets: every token the configuration reads is handed to the
// redactor, whatever its source; unreadable files are left to Validate.
func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  file-token-1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  string
		cfg  Config
		want []string
	}{
		{"nothing configured", "", Config{}, nil},
		{"GITHUB_TOKEN", "env-token-5678", Config{GitHubRepo: "a/b"}, []string{"env-token-5678"}},
		{"github token file wins", "env-token-5678", Config{GitHubRepo: "a/b", GitHubTokenFile: file}, []string{"file-token-1234"}},
		{"jira bearer", "", Config{JiraURL: "https://jira", JiraTokenFile: file}, []string{"file-token-1234"}},
		{"jira basic", "", Config{JiraURL: "https://jira", JiraUser: "u@x", JiraTokenFile: file},
			[]string{"file-token-1234", "dUB4OmZpbGUtdG9rZW4tMTIzNA=="}},
		{"unreadable file", "", Config{GitHubRepo: "a/b", GitHubTokenFile: filepath.Join(dir, "missing")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(TokenEnv, tc.env)
			if got := tc.cfg.Secrets(); !slices.Equal(got, tc.want) {
				t.Errorf("Secrets() = %q, want %q", got, tc.want)
			}
		})
	}
}
