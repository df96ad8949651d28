// Package s3upload delivers report files to S3 or an S3-compatible store
// (aws-sdk-go-v2): under <prefix>/<YYYY-MM-DD>/<run-id>/ and, once all of
// those are stored, copied to <prefix>/latest/. Credentials come from the
// standard AWS chain: environment, shared profile, IRSA web identity, ECS
// or EC2 instance roles.
package s3upload

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/redact"
)

// EnvAlias is the variable the original CronJob set; it fills --s3-url
// when neither the flag nor FLEETSCAN_S3_URL is given.
const EnvAlias = "REPORT_BUCKET"

// LatestDir is the prefix that always holds the newest report.
const LatestDir = "latest"

// Config selects the destination and how to reach it.
type Config struct {
	// URL is s3://bucket[/prefix]; empty disables uploading.
	URL string
	// Endpoint overrides the S3 endpoint (S3-compatible stores).
	Endpoint string
	// PathStyle addresses buckets as endpoint/bucket instead of
	// bucket.endpoint (most S3-compatible stores need it).
	PathStyle bool
	// Region; empty takes the AWS chain's, else us-east-1 with an endpoint.
	Region string
	// SSE is server-side encryption: "", "AES256" or "aws:kms".
	SSE string
	// KMSKeyID selects the KMS key with SSE aws:kms (default: the bucket's).
	KMSKeyID string
	// Timeout bounds the whole upload.
	Timeout time.Duration
}

// Defaults returns uploading disabled with a 10-minute timeout.
func Defaults() Config { return Config{Timeout: 10 * time.Minute} }

// RegisterFlags binds --s3-*.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.URL, "s3-url", c.URL, "upload the report to s3://bucket/prefix (also from $"+EnvAlias+")")
	fs.StringVar(&c.Endpoint, "s3-endpoint", c.Endpoint, "S3 endpoint URL for S3-compatible stores (default: AWS)")
	fs.BoolVar(&c.PathStyle, "s3-path-style", c.PathStyle, "use path-style bucket addressing (most S3-compatible stores)")
	fs.StringVar(&c.Region, "s3-region", c.Region, "S3 region (default: from the AWS environment/profile; us-east-1 with --s3-endpoint)")
	fs.StringVar(&c.SSE, "s3-sse", c.SSE, "server-side encryption: AES256 or aws:kms (default: the bucket's)")
	fs.StringVar(&c.KMSKeyID, "s3-kms-key-id", c.KMSKeyID, "KMS key for --s3-sse aws:kms (default: the bucket's key)")
	fs.DurationVar(&c.Timeout, "s3-timeout", c.Timeout, "give up the upload after this long")
}

// Enabled reports whether an upload is configured.
func (c Config) Enabled() bool { return strings.TrimSpace(c.URL) != "" }

// Validate checks the settings without contacting S3.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	if _, _, err := ParseURL(c.URL); err != nil {
		errs = append(errs, err)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--s3-endpoint %q: want http(s)://host[:port]", redact.URL(c.Endpoint)))
		}
	}
	switch c.SSE {
	case "", string(types.ServerSideEncryptionAes256), string(types.ServerSideEncryptionAwsKms):
	default:
		errs = append(errs, fmt.Errorf("--s3-sse %q: want AES256 or aws:kms", c.SSE))
	}
	if c.KMSKeyID != "" && c.SSE != string(types.ServerSideEncryptionAwsKms) {
		errs = append(errs, errors.New("--s3-kms-key-id needs --s3-sse aws:kms"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("--s3-timeout must be positive"))
	}
	return errors.Join(errs...)
}

// ParseURL splits s3://bucket/prefix; the prefix has no leading or
// trailing slash.
func ParseURL(s string) (bucket, prefix string, err error) {
	shown := redact.URL(s) // never echo credentials
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "s3://")
	if !ok {
		return "", "", fmt.Errorf("--s3-url %q: want s3://bucket[/prefix]", shown)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("--s3-url %q: bucket name is empty", shown)
	}
	if strings.Contains(bucket, "@") {
		return "", "", fmt.Errorf("--s3-url %q: credentials do not belong in the URL (use the AWS environment or profile)", shown)
	}
	for _, r := range bucket {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r >= 'A' && r <= 'Z') {
			return "", "", fmt.Errorf("--s3-url %q: bucket name %q has invalid character %q", shown, bucket, r)
		}
	}
	return bucket, strings.Trim(prefix, "/"), nil
}

// File is one file to upload.
type File struct {
	// Name is the object name below the report's directory.
	Name        string
	Path        string
	ContentType string
}

// Uploader uploads report files to one bucket and prefix.
type Uploader struct {
	client *s3.Client
	cfg    Config
	bucket string
	prefix string
	log    *zap.Logger
}

// New builds an uploader; credentials are resolved from the AWS chain
// when the first request is signed.
func New(ctx context.Context, c Config, log *zap.Logger) (*Uploader, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, errors.New("s3upload: no --s3-url configured")
	}
	if log == nil {
		log = zap.NewNop()
	}
	bucket, prefix, _ := ParseURL(c.URL)
	var opts []func(*config.LoadOptions) error
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration for s3://%s: %w", bucket, err)
	}
	if awsCfg.Region == "" {
		if c.Endpoint == "" {
			return nil, fmt.Errorf("s3://%s: no AWS region: set --s3-region or AWS_REGION", bucket)
		}
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
	})
	return &Uploader{client: client, cfg: c, bucket: bucket, prefix: prefix, log: log}, nil
}

// Endpoint describes where requests go, for messages.
func (u *Uploader) Endpoint() string {
	if u.cfg.Endpoint != "" {
		return u.cfg.Endpoint
	}
	return "AWS S3 (" + u.client.Options().Region + ")"
}

// Destination is s3://bucket/prefix.
func (u *Uploader) Destination() string { return "s3://" + path.Join(u.bucket, u.prefix) }

// Keys returns the dated and latest object keys of a file name.
func (u *Uploader) Keys(day time.Time, runID, name string) (dated, latest string) {
	return path.Join(u.prefix, day.UTC().Format(time.DateOnly), runID, name), path.Join(u.prefix, LatestDir, name)
}

// Upload stores every file under <prefix>/<day>/<runID>/ and then copies
// them to <prefix>/latest/, so latest only ever changes to a complete
// report. It returns the s3:// URLs written.
func (u *Uploader) Upload(ctx context.Context, day time.Time, runID string, files []File) ([]string, error) {
	if strings.ContainsAny(runID, "/\\") || runID == "" || runID == "." || runID == ".." {
		return nil, fmt.Errorf("run id %q cannot name an S3 directory", runID)
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	var written []string
	for _, f := range files {
		key, _ := u.Keys(day, runID, f.Name)
		if err := u.put(ctx, key, f); err != nil {
			return written, err
		}
		written = append(written, "s3://"+u.bucket+"/"+key)
	}
	for _, f := range files {
		src, latest := u.Keys(day, runID, f.Name)
		if err := u.copy(ctx, src, latest, f); err != nil {
			return written, err
		}
		written = append(written, "s3://"+u.bucket+"/"+latest)
	}
	u.log.Info("report uploaded", zap.String("destination", u.Destination()), zap.String("endpoint", u.Endpoint()),
		zap.Int("objects", len(written)))
	return written, nil
}

func (u *Uploader) put(ctx context.Context, key string, f File) error {
	body, err := os.Open(f.Path)
	if err != nil {
		return fmt.Errorf("upload %s: %w", f.Path, err)
	}
	defer body.Close()
	st, err := body.Stat()
	if err != nil {
		return fmt.Errorf("upload %s: %w", f.Path, err)
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(u.bucket),
		Key:           aws.String(key),
		Body:          body,
		ContentLength: aws.Int64(st.Size()),
		ContentType:   aws.String(f.ContentType),
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = u.sse()
	if _, err := u.client.PutObject(ctx, in); err != nil {
		return u.wrap("upload "+f.Name+" to", key, err)
	}
	return nil
}

func (u *Uploader) copy(ctx context.Context, src, dst string, f File) error {
	in := &s3.CopyObjectInput{
		Bucket:            aws.String(u.bucket),
		Key:               aws.String(dst),
		CopySource:        aws.String(copySource(u.bucket, src)),
		ContentType:       aws.String(f.ContentType),
		MetadataDirective: types.MetadataDirectiveReplace,
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = u.sse()
	if _, err := u.client.CopyObject(ctx, in); err != nil {
		return u.wrap("copy "+f.Name+" to", dst, err)
	}
	return nil
}

func (u *Uploader) sse() (types.ServerSideEncryption, *string) {
	if u.cfg.SSE == "" {
		return "", nil
	}
	var key *string
	if u.cfg.KMSKeyID != "" {
		key = aws.String(u.cfg.KMSKeyID)
	}
	return types.ServerSideEncryption(u.cfg.SSE), key
}

// copySource renders bucket/key URL-escaped, as CopyObject requires.
func copySource(bucket, key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return bucket + "/" + strings.Join(parts, "/")
}

// wrap names the bucket, key and endpoint, and hints at the usual causes.
func (u *Uploader) wrap(op, key string, err error) error {
	hint := ""
	msg := err.Error()
	switch {
	case strings.Contains(msg, "SignatureDoesNotMatch"), strings.Contains(msg, "InvalidAccessKeyId"),
		strings.Contains(msg, "AccessDenied"), strings.Contains(msg, "StatusCode: 403"):
		hint = " (credentials refused: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the profile or the IRSA role)"
	case strings.Contains(msg, "failed to retrieve credentials"), strings.Contains(msg, "no EC2 IMDS role found"):
		hint = " (no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or IRSA)"
	case strings.Contains(msg, "NoSuchBucket"):
		hint = " (bucket does not exist)"
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"), strings.Contains(msg, "i/o timeout"):
		hint = " (endpoint unreachable)"
	}
	return fmt.Errorf("%s s3://%s/%s at %s%s: %w", op, u.bucket, key, u.Endpoint(), hint, err)
}
