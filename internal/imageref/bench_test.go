package imageref

import "testing"

// BenchmarkParseImageID parses each imageID form a container status
// carries (the dispatcher parses one per container: 225,000 for a
// 100,000-pod fleet).
func BenchmarkParseImageID(b *testing.B) {
	const digest = "sha256:4bf3e2a0f7b3c2e1d5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8"
	for _, tc := range []struct{ name, id string }{
		{"containerd", "registry.example.com/team/app@" + digest},
		{"docker-hub-short", "nginx@" + digest},
		{"docker-pullable", "docker-pullable://registry.example.com:5000/team/app@" + digest},
		{"local-id", "docker://" + digest},
		{"empty", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseImageID(tc.id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNormalizeReference normalises spec image references (tags,
// digests, Docker Hub short names).
func BenchmarkNormalizeReference(b *testing.B) {
	for _, tc := range []struct{ name, ref string }{
		{"short-name", "nginx"},
		{"tag", "registry.example.com/team/app:1.4.2"},
		{"digest", "registry.example.com:5000/team/app@sha256:4bf3e2a0f7b3c2e1d5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NormalizeReference(tc.ref); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
