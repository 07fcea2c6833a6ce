package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

func testCreateAsset(t *testing.T, s store.Store) {
	want := store.Asset{
		ID:          "a1",
		Name:        "holiday clip.mov",
		ContentType: "video/quicktime",
		Bucket:      "media",
		Key:         "src/a1",
		Size:        123456789,
		ETag:        `"d41d8cd98f00b204e9800998ecf8427e"`,
		Status:      store.StatusFailed,
		Error:       "probe: no video stream",
		Media:       json.RawMessage(`{"format": "mov", "streams": [{"codec": "h264", "width": 1920}]}`),
		CreatedAt:   epoch,
		UpdatedAt:   epoch.Add(time.Second),
		UploadedAt:  epoch.Add(500 * time.Millisecond),
	}
	got := mustCreate(t, s, want)
	checkAsset(t, got, want)
}

func testCreateAssetDefaults(t *testing.T, s store.Store) {
	lo := clock()
	got := mustCreate(t, s, store.Asset{ID: "a1", Name: "x.mp4"})
	c := check(t, "asset %q", "a1")
	c.eq("Status", got.Status, store.StatusPending)
	c.between("CreatedAt", got.CreatedAt, lo)
	c.between("UpdatedAt", got.UpdatedAt, lo)
	c.time("UploadedAt", got.UploadedAt, time.Time{})
	if got.Media != nil {
		t.Errorf("asset %q: Media = %q, want nil", got.ID, got.Media)
	}
}

func testCreateAssetConflict(t *testing.T, s store.Store) {
	want := mustCreate(t, s, newAsset("a1", epoch))
	dup := newAsset("a1", epoch.Add(time.Hour))
	dup.Name = "other.mp4"
	err := s.CreateAsset(t.Context(), dup)
	wantErr(t, "CreateAsset(duplicate)", err, store.ErrConflict)
	checkAsset(t, mustGet(t, s, "a1"), want)
}

func testGetAssetNotFound(t *testing.T, s store.Store) {
	_, err := s.GetAsset(t.Context(), "missing")
	wantErr(t, "GetAsset(missing)", err, store.ErrNotFound)
}

func testTimeRoundTrip(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		at   time.Time
	}{
		{"utc", epoch},
		{"offset", time.Date(2024, time.February, 29, 23, 59, 59, 999999000, time.FixedZone("UTC+5:30", 5*3600+1800))},
		{"negative offset", time.Date(2030, time.July, 1, 0, 0, 0, 1000, time.FixedZone("UTC-8", -8*3600))},
		{"local", time.Date(2025, time.October, 26, 2, 30, 0, 123456000, time.Local)},
		{"early", time.Date(1970, time.January, 1, 0, 0, 0, 1000, time.UTC)},
		{"late", time.Date(2199, time.December, 31, 23, 59, 59, 999999000, time.UTC)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAsset(fmt.Sprintf("a%d", i), tt.at)
			a.UpdatedAt = tt.at.Add(time.Microsecond)
			a.UploadedAt = tt.at.Add(-time.Microsecond)
			got := mustCreate(t, s, a)
			c := check(t, "asset %q", a.ID)
			c.time("CreatedAt", got.CreatedAt, a.CreatedAt)
			c.time("UpdatedAt", got.UpdatedAt, a.UpdatedAt)
			c.time("UploadedAt", got.UploadedAt, a.UploadedAt)
		})
	}
}

func testListAssetsOrder(t *testing.T, s store.Store) {
	// b and c share a creation time: the greater ID comes first.
	for _, a := range []store.Asset{
		newAsset("b", epoch.Add(time.Minute)),
		newAsset("a", epoch),
		newAsset("c", epoch.Add(time.Minute)),
		newAsset("d", epoch.Add(time.Microsecond)),
	} {
		mustCreate(t, s, a)
	}
	p, err := s.ListAssets(t.Context(), store.ListOptions{})
	if err != nil {
		t.Fatalf("ListAssets: %v", err)
	}
	checkIDs(t, "ListAssets", p.Assets, []string{"c", "b", "d", "a"})
	if p.Next != "" {
		t.Errorf("ListAssets: Next = %q, want none on the last page", p.Next)
	}
	checkAsset(t, p.Assets[2], mustGet(t, s, "d"))

	empty, err := s.ListAssets(t.Context(), store.ListOptions{Status: store.StatusSkipped})
	if err != nil {
		t.Fatalf("ListAssets(skipped): %v", err)
	}
	checkIDs(t, "ListAssets(skipped)", empty.Assets, []string{})
	if empty.Next != "" {
		t.Errorf("ListAssets(skipped): Next = %q, want none", empty.Next)
	}
}

// testListAssetsFilters: the name filter is a case-insensitive substring
// match in which LIKE's wildcards are plain characters; the filters
// combine with each other and with pages.
func testListAssetsFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i, a := range []struct{ id, name, pipeline, owner string }{
		{"a", "Holiday Clip.mp4", "video", "k1"},
		{"b", "holiday_100%.mov", "video", "k2"},
		{"c", "interview.wav", "audio", "k1"},
		{"d", "HOLIDAY.jpg", "image", ""},
		{"e", "other.mp4", "", "k1"},
	} {
		x := newAsset(a.id, epoch.Add(time.Duration(i)*time.Second))
		x.Name, x.Owner = a.name, a.owner
		mustCreate(t, s, x)
		if a.pipeline != "" {
			if err := s.SetPipeline(ctx, a.id, a.pipeline); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tt := range []struct {
		opts store.ListOptions
		want []string
	}{
		{store.ListOptions{Name: "holiday"}, []string{"d", "b", "a"}},
		{store.ListOptions{Name: "HoLiDaY c"}, []string{"a"}},
		{store.ListOptions{Name: "100%"}, []string{"b"}},
		{store.ListOptions{Name: "_"}, []string{"b"}},
		{store.ListOptions{Name: "%"}, []string{"b"}},
		{store.ListOptions{Pipeline: "video"}, []string{"b", "a"}},
		{store.ListOptions{Pipeline: "video", Name: "clip"}, []string{"a"}},
		{store.ListOptions{Pipeline: "nope"}, []string{}},
		{store.ListOptions{Name: "holiday", Status: store.StatusSucceeded}, []string{}},
		{store.ListOptions{Owner: "k1"}, []string{"e", "c", "a"}},
		{store.ListOptions{Owner: "k1", Name: "holiday"}, []string{"a"}},
		{store.ListOptions{Owner: "k3"}, []string{}},
	} {
		p, err := s.ListAssets(ctx, tt.opts)
		if err != nil {
			t.Fatalf("ListAssets(%+v): %v", tt.opts, err)
		}
		checkIDs(t, fmt.Sprintf("ListAssets(%+v)", tt.opts), p.Assets, tt.want)
	}
	// Pages of a filtered listing.
	p, err := s.ListAssets(ctx, store.ListOptions{Name: "holiday", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "page 1", p.Assets, []string{"d", "b"})
	p, err = s.ListAssets(ctx, store.ListOptions{Name: "holiday", Limit: 2, Cursor: p.Next})
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "page 2", p.Assets, []string{"a"})
}

func testListAssetsPages(t *testing.T, s store.Store) {
	ctx := t.Context()
	var want []string
	for i := range 25 {
		// Pairs share a creation time, so pages also split ties.
		a := newAsset(fmt.Sprintf("a%02d", i), epoch.Add(time.Duration(i/2)*time.Second))
		mustCreate(t, s, a)
		want = append(want, a.ID)
	}
	slices.Reverse(want)

	// Assets created between fetches sort before the first page and must
	// not shift the ones still to come.
	inserted := 0
	insert := func() {
		for range 3 {
			inserted++
			mustCreate(t, s, newAsset(fmt.Sprintf("new%02d", inserted), epoch.Add(time.Hour+time.Duration(inserted)*time.Second)))
		}
	}

	var got []string
	var cursor string
	for page := 1; page <= 3; page++ {
		p, err := s.ListAssets(ctx, store.ListOptions{Limit: 10, Cursor: cursor})
		if err != nil {
			t.Fatalf("ListAssets(page %d): %v", page, err)
		}
		wantLen := min(10, 25-len(got))
		if len(p.Assets) != wantLen {
			t.Errorf("ListAssets(page %d): got %d assets, want %d", page, len(p.Assets), wantLen)
		}
		if last := page == 3; (p.Next == "") != last {
			t.Errorf("ListAssets(page %d): Next = %q, want it empty only on the last page", page, p.Next)
		}
		got = append(got, ids(p.Assets)...)
		cursor = p.Next
		insert()
		if cursor == "" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListAssets pages: got %q, want %q", got, want)
	}

	// A fresh first page sees the new assets.
	p, err := s.ListAssets(ctx, store.ListOptions{Limit: 2})
	if err != nil {
		t.Fatalf("ListAssets: %v", err)
	}
	checkIDs(t, "ListAssets(first page again)", p.Assets, []string{"new09", "new08"})
}

func testListAssetsStatus(t *testing.T, s store.Store) {
	statuses := []store.Status{store.StatusPending, store.StatusProcessing, store.StatusFailed}
	var want []string
	for i := range 12 {
		a := newAsset(fmt.Sprintf("a%02d", i), epoch.Add(time.Duration(i)*time.Second))
		a.Status = statuses[i%3]
		mustCreate(t, s, a)
		if a.Status == store.StatusProcessing {
			want = append(want, a.ID)
		}
	}
	slices.Reverse(want)

	var got []string
	opts := store.ListOptions{Limit: 3, Status: store.StatusProcessing}
	for range 10 {
		p, err := s.ListAssets(t.Context(), opts)
		if err != nil {
			t.Fatalf("ListAssets(processing): %v", err)
		}
		for _, a := range p.Assets {
			if a.Status != store.StatusProcessing {
				t.Errorf("ListAssets(processing): asset %q has status %q", a.ID, a.Status)
			}
		}
		got = append(got, ids(p.Assets)...)
		if opts.Cursor = p.Next; opts.Cursor == "" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListAssets(processing): got %q, want %q", got, want)
	}
}

func testListAssetsLimit(t *testing.T, s store.Store) {
	const n = 1001
	for i := range n {
		mustCreate(t, s, newAsset(fmt.Sprintf("a%04d", i), epoch.Add(time.Duration(i)*time.Millisecond)))
	}
	tests := []struct {
		limit int
		want  int
	}{
		{limit: 0, want: 50},
		{limit: -1, want: 50},
		{limit: 1, want: 1},
		{limit: 1000, want: 1000},
		{limit: 1001, want: 1000},
		{limit: 1 << 20, want: 1000},
	}
	for _, tt := range tests {
		p, err := s.ListAssets(t.Context(), store.ListOptions{Limit: tt.limit})
		if err != nil {
			t.Fatalf("ListAssets(limit %d): %v", tt.limit, err)
		}
		if len(p.Assets) != tt.want {
			t.Errorf("ListAssets(limit %d): got %d assets, want %d", tt.limit, len(p.Assets), tt.want)
		}
		if p.Next == "" {
			t.Errorf("ListAssets(limit %d): Next is empty, want a cursor", tt.limit)
		}
		if len(p.Assets) > 0 && p.Assets[0].ID != "a1000" {
			t.Errorf("ListAssets(limit %d): first is %q, want %q", tt.limit, p.Assets[0].ID, "a1000")
		}
	}
}

func testListAssetsInvalidCursor(t *testing.T, s store.Store) {
	for i := range 3 {
		mustCreate(t, s, newAsset(fmt.Sprintf("a%d", i), epoch.Add(time.Duration(i)*time.Second)))
	}
	p, err := s.ListAssets(t.Context(), store.ListOptions{Limit: 1})
	if err != nil || p.Next == "" {
		t.Fatalf("ListAssets(limit 1): got next %q, error %v; want a cursor", p.Next, err)
	}
	for _, cursor := range []string{"not a cursor!", "%%%", "{}", p.Next + "*"} {
		_, err := s.ListAssets(t.Context(), store.ListOptions{Cursor: cursor})
		wantErr(t, fmt.Sprintf("ListAssets(cursor %q)", cursor), err, store.ErrInvalidCursor)
	}
}

func testMarkUploaded(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newAsset("a1", epoch)
	a.Status = store.StatusFailed
	a.Error = "upload interrupted"
	want := mustCreate(t, s, a)

	lo := clock()
	obj := store.Object{Bucket: "media", Key: "src/a1", Size: 987654, ETag: `"abc"`, ContentType: "video/webm"}
	if err := s.MarkUploaded(ctx, "a1", obj); err != nil {
		t.Fatalf("MarkUploaded: %v", err)
	}
	got := mustGet(t, s, "a1")
	c := check(t, "asset %q after MarkUploaded", "a1")
	c.between("UploadedAt", got.UploadedAt, lo)
	c.between("UpdatedAt", got.UpdatedAt, lo)
	want.Bucket, want.Key, want.Size, want.ETag, want.ContentType = obj.Bucket, obj.Key, obj.Size, obj.ETag, obj.ContentType
	want.Status, want.Error = store.StatusPending, ""
	want.UploadedAt, want.UpdatedAt = got.UploadedAt, got.UpdatedAt
	checkAsset(t, got, want)

	err := s.MarkUploaded(ctx, "missing", obj)
	wantErr(t, "MarkUploaded(missing)", err, store.ErrNotFound)
}

func testSetAssetStatus(t *testing.T, s store.Store) {
	ctx := t.Context()
	want := mustCreate(t, s, newAsset("a1", epoch))
	tests := []struct {
		status store.Status
		errMsg string
	}{
		{store.StatusFailed, "dead-lettered after 5 deliveries"},
		{store.StatusProcessing, ""},
		{store.StatusSucceeded, ""},
	}
	for _, tt := range tests {
		lo := clock()
		if err := s.SetAssetStatus(ctx, "a1", tt.status, tt.errMsg); err != nil {
			t.Fatalf("SetAssetStatus(%q): %v", tt.status, err)
		}
		got := mustGet(t, s, "a1")
		check(t, "asset %q after SetAssetStatus(%q)", "a1", tt.status).between("UpdatedAt", got.UpdatedAt, lo)
		want.Status, want.Error, want.UpdatedAt = tt.status, tt.errMsg, got.UpdatedAt
		checkAsset(t, got, want)
	}
	err := s.SetAssetStatus(ctx, "missing", store.StatusFailed, "x")
	wantErr(t, "SetAssetStatus(missing)", err, store.ErrNotFound)
}

func testSetMedia(t *testing.T, s store.Store) {
	ctx := t.Context()
	want := mustCreate(t, s, newAsset("a1", epoch))
	for _, media := range []json.RawMessage{
		json.RawMessage(`{"duration": 12.5, "video": {"codec": "h264", "width": 1280, "height": 720}}`),
		json.RawMessage(`{"duration": 3, "audio": {"codec": "opus"}}`),
	} {
		lo := clock()
		if err := s.SetMedia(ctx, "a1", media); err != nil {
			t.Fatalf("SetMedia(%s): %v", media, err)
		}
		got := mustGet(t, s, "a1")
		check(t, "asset %q after SetMedia", "a1").between("UpdatedAt", got.UpdatedAt, lo)
		want.Media, want.UpdatedAt = media, got.UpdatedAt
		checkAsset(t, got, want)
	}
	err := s.SetMedia(ctx, "missing", json.RawMessage(`{}`))
	wantErr(t, "SetMedia(missing)", err, store.ErrNotFound)
}

func testListStalled(t *testing.T, s store.Store) {
	ctx := t.Context()
	const lease = time.Hour
	create := func(id string) {
		mustCreate(t, s, newAsset(id, epoch))
		tick()
	}

	create("not-uploaded")
	create("pending")
	mustUpload(t, s, "pending")
	tick()
	create("released")
	mustUpload(t, s, "released")
	mustClaim(t, s, store.Claim{Key: "job-released", AssetID: "released", Owner: "w1", Now: clock(), Lease: lease})
	if err := s.ReleaseJob(ctx, "job-released", "w1"); err != nil {
		t.Fatalf("ReleaseJob: %v", err)
	}
	tick()
	create("leased")
	mustUpload(t, s, "leased")
	mustClaim(t, s, store.Claim{Key: "job-leased", AssetID: "leased", Owner: "w1", Now: clock(), Lease: lease})
	tick()
	create("expired")
	mustUpload(t, s, "expired")
	// A lease shorter than a tick has lapsed by the time of the query.
	mustClaim(t, s, store.Claim{Key: "job-expired", AssetID: "expired", Owner: "w1", Now: clock(), Lease: time.Millisecond})
	tick()
	create("succeeded")
	mustUpload(t, s, "succeeded")
	mustClaim(t, s, store.Claim{Key: "job-succeeded", AssetID: "succeeded", Owner: "w1", Now: clock(), Lease: lease})
	if err := s.FinishJob(ctx, "job-succeeded", "w1", store.StatusSucceeded, ""); err != nil {
		t.Fatalf("FinishJob: %v", err)
	}
	create("failed")
	mustUpload(t, s, "failed")
	if err := s.SetAssetStatus(ctx, "failed", store.StatusFailed, "dead-lettered"); err != nil {
		t.Fatalf("SetAssetStatus: %v", err)
	}
	tick()
	before := clock()
	tick()
	create("recent")
	mustUpload(t, s, "recent")
	now := clock()

	tests := []struct {
		name   string
		now    time.Time
		before time.Time
		limit  int
		want   []string
	}{
		{"live leases", now, before, 100, []string{"pending", "released", "expired"}},
		{"limit", now, before, 2, []string{"pending", "released"}},
		{"leases lapsed", now.Add(2 * lease), before, 100, []string{"pending", "released", "leased", "expired"}},
		{"all updated", now.Add(2 * lease), clock().Add(time.Second), 100, []string{"pending", "released", "leased", "expired", "recent"}},
		{"nothing before", now, epoch, 100, []string{}},
	}
	for _, tt := range tests {
		got, err := s.ListStalled(ctx, tt.now, tt.before, tt.limit)
		if err != nil {
			t.Fatalf("ListStalled(%s): %v", tt.name, err)
		}
		checkIDs(t, fmt.Sprintf("ListStalled(%s)", tt.name), got, tt.want)
	}
	got, err := s.ListStalled(ctx, now, before, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("ListStalled(limit 1): got %d assets, error %v; want 1", len(got), err)
	}
	checkAsset(t, got[0], mustGet(t, s, "pending"))
}

func testListAwaitingUpload(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, a := range []struct {
		id       string
		age      time.Duration
		uploaded bool
	}{
		{"uploaded-old", 4 * time.Hour, true},
		{"old", 3 * time.Hour, false},
		{"expired", 3 * time.Hour, false},
		{"uploaded", 2 * time.Hour, true},
		{"older-tie-b", time.Hour, false},
		{"older-tie-a", time.Hour, false},
		{"at-cutoff", 0, false},
		{"new", -time.Hour, false},
	} {
		mustCreate(t, s, newAsset(a.id, epoch.Add(-a.age)))
		if a.uploaded {
			mustUpload(t, s, a.id)
		}
	}
	// Given up on already: not awaiting any more.
	if err := s.SetAssetStatus(ctx, "expired", store.StatusFailed, "upload expired"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		before time.Time
		limit  int
		want   []string
	}{
		{epoch, 100, []string{"old", "older-tie-a", "older-tie-b"}},
		{epoch, 2, []string{"old", "older-tie-a"}},
		{epoch.Add(time.Microsecond), 100, []string{"old", "older-tie-a", "older-tie-b", "at-cutoff"}},
		{epoch.Add(-5 * time.Hour), 100, []string{}},
	}
	for _, tt := range tests {
		got, err := s.ListAwaitingUpload(ctx, tt.before, tt.limit)
		if err != nil {
			t.Fatalf("ListAwaitingUpload(%v, %d): %v", tt.before, tt.limit, err)
		}
		checkIDs(t, fmt.Sprintf("ListAwaitingUpload(%v, %d)", tt.before, tt.limit), got, tt.want)
	}
	got, err := s.ListAwaitingUpload(ctx, epoch, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("ListAwaitingUpload(limit 1): got %d assets, error %v; want 1", len(got), err)
	}
	checkAsset(t, got[0], mustGet(t, s, "old"))
}
