package integration_test

// reportJSON is the part of report.json (pkg/reportjson/report.schema.json) the
// scenarios assert on. It is decoded from the file, as a consumer of the
// report would, not from the reporter's in-memory model.
type reportJSON struct {
	SchemaVersion string `json:"schemaVersion"`
	Complete      bool   `json:"complete"`
	Summary       struct {
		Findings             int `json:"findings"`
		Breached             int `json:"breached"`
		BreachedUnaccepted   int `json:"breachedUnaccepted"`
		Images               int `json:"images"`
		ImagesScanned        int `json:"imagesScanned"`
		ImagesFailed         int `json:"imagesFailed"`
		ImagesNotScanned     int `json:"imagesNotScanned"`
		UnresolvedContainers int `json:"unresolvedContainers"`
		Clusters             int `json:"clusters"`
		ClustersUnreachable  int `json:"clustersUnreachable"`
	} `json:"summary"`
	Clusters []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Pods   int    `json:"pods"`
	} `json:"clusters"`
	Failures []struct {
		Digest    string   `json:"digest"`
		Platform  string   `json:"platform"`
		Image     string   `json:"image"`
		Class     string   `json:"class"`
		Reason    string   `json:"reason"`
		Attempts  int      `json:"attempts"`
		Workloads []string `json:"workloads"`
	} `json:"failures"`
	NotScanned []struct {
		Digest   string `json:"digest"`
		Platform string `json:"platform"`
		Image    string `json:"image"`
		Reason   string `json:"reason"`
	} `json:"notScanned"`
	Findings []struct {
		Image            string `json:"image"`
		Digest           string `json:"digest"`
		Platform         string `json:"platform"`
		VulnerabilityID  string `json:"vulnerabilityId"`
		Severity         string `json:"severity"`
		PkgName          string `json:"pkgName"`
		InstalledVersion string `json:"installedVersion"`
		FixedVersion     string `json:"fixedVersion"`
		Breached         bool   `json:"slaBreached"`
	} `json:"findings"`
}
