package harness

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/testcontainers/testcontainers-go/wait"
)

// S3 is a versitygw S3 gateway container (posix backend on a volume). It
// checks SigV4 signatures, so a signing or credentials mistake fails here
// as it would against AWS.
type S3 struct {
	*Container
	// Endpoint is the URL the test process uses.
	Endpoint string
	// InternalEndpoint is "http://s3:7070", for containers.
	InternalEndpoint string
	AccessKey        string
	SecretKey        string
	Region           string
	Client           *s3.Client
}

// StartS3 starts the gateway as "s3" and creates buckets.
func (e *Env) StartS3(ctx context.Context, buckets ...string) *S3 {
	e.T.Helper()
	bin := MustStaticBinary(e.T, "versitygw", "tools")
	img, err := EnsureImage(ctx, e.Docker.Client, ImageSpec{Name: "versitygw", Binary: bin, Dirs: []string{"/data"}, Expose: []string{"7070/tcp"}})
	if err != nil {
		e.T.Fatal(err)
	}
	s := &S3{AccessKey: "fleetscan-it", SecretKey: "fleetscan-it-secret-" + e.ID, Region: "us-east-1", InternalEndpoint: "http://s3:7070"}
	vol := e.Volume(ctx, "s3")
	s.Container = e.Start(ctx, Spec{
		Name:       "s3",
		Image:      img,
		Cmd:        []string{"--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region, "--port", ":7070", "posix", "/data"},
		FixedPorts: []string{"7070/tcp"},
		Mounts:     []Mount{{Volume: vol, Target: "/data"}},
		// Any HTTP answer (an anonymous request gets 403) means it serves.
		Wait: wait.ForHTTP("/").WithPort("7070/tcp").WithStatusCodeMatcher(func(int) bool { return true }).WithStartupTimeout(30 * time.Second),
	})
	s.Endpoint = "http://" + s.HostAddr(ctx, "7070/tcp")
	s.Client = s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       s.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
	for _, b := range buckets {
		if _, err := s.Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			e.T.Fatalf("create bucket %s at %s: %v", b, s.Endpoint, err)
		}
	}
	return s
}

// Get reads an object.
func (s *S3) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// List returns the keys under prefix.
func (s *S3) List(ctx context.Context, bucket, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}
