use chrono::{NaiveDateTime, TimeZone};

use super::*;

const SERVICE_DESK: &str = r#"
calendar: service-desk
title: Service desk, Beijing time
time_zone: Asia/Shanghai
week:
  mon: ["09:00-12:00", "13:00-18:00"]
  tue: ["09:00-12:00", "13:00-18:00"]
  wed: ["09:00-12:00", "13:00-18:00"]
  thu: ["09:00-12:00", "13:00-18:00"]
  fri: ["09:00-12:00", "13:00-18:00"]
holidays:
  - { from: 2026-10-01, to: 2026-10-07, name: 国庆节 }
  - 2027-01-01
working_days:
  - { date: 2026-10-10, hours_of: mon, name: 国庆调休 }
"#;

const ALWAYS: &str = r#"
calendar: always
time_zone: America/New_York
week:
  mon: ["00:00-24:00"]
  tue: ["00:00-24:00"]
  wed: ["00:00-24:00"]
  thu: ["00:00-24:00"]
  fri: ["00:00-24:00"]
  sat: ["00:00-24:00"]
  sun: ["00:00-24:00"]
"#;

const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;

fn calendar(yaml: &str) -> Calendar {
    parse_calendar("c.yaml", yaml).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The instant of a local time in the calendar's zone (`2026-09-30 17:00`).
fn at(cal: &Calendar, local: &str) -> i64 {
    let t = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
    cal.time_zone
        .from_local_datetime(&t)
        .earliest()
        .unwrap()
        .timestamp_millis()
}

#[test]
fn a_target_in_business_hours_skips_the_lunch_break_and_the_night() {
    let cal = calendar(SERVICE_DESK);
    // Monday 2026-09-21.
    let due = cal
        .add_working_ms(at(&cal, "2026-09-21 11:30"), HOUR)
        .unwrap();
    assert_eq!(due, at(&cal, "2026-09-21 13:30"));
    let due = cal
        .add_working_ms(at(&cal, "2026-09-21 17:00"), 2 * HOUR)
        .unwrap();
    assert_eq!(due, at(&cal, "2026-09-22 10:00"));
}

#[test]
fn a_target_started_out_of_hours_counts_from_the_next_working_minute() {
    let cal = calendar(SERVICE_DESK);
    // Saturday 2026-09-26 is not worked.
    let due = cal
        .add_working_ms(at(&cal, "2026-09-26 10:00"), 30 * MINUTE)
        .unwrap();
    assert_eq!(due, at(&cal, "2026-09-28 09:30"));
}

#[test]
fn a_target_spanning_a_holiday_and_a_make_up_saturday_lands_on_the_right_minute() {
    let cal = calendar(SERVICE_DESK);
    // Wednesday 2026-09-30, 17:00: one hour that day, then the National Day week off.
    let due = cal
        .add_working_ms(at(&cal, "2026-09-30 17:00"), 2 * HOUR)
        .unwrap();
    assert_eq!(due, at(&cal, "2026-10-08 10:00"));
    // Friday 2026-10-09, 17:00: one hour, then Saturday 10-10 is worked (调休).
    let due = cal
        .add_working_ms(at(&cal, "2026-10-09 17:00"), 3 * HOUR)
        .unwrap();
    assert_eq!(due, at(&cal, "2026-10-10 11:00"));
    // The Sunday after is not.
    let due = cal
        .add_working_ms(at(&cal, "2026-10-10 17:30"), HOUR)
        .unwrap();
    assert_eq!(due, at(&cal, "2026-10-12 09:30"));
}

#[test]
fn working_time_between_two_instants_counts_only_working_minutes() {
    let cal = calendar(SERVICE_DESK);
    let from = at(&cal, "2026-09-25 17:00"); // Friday
    let to = at(&cal, "2026-09-28 10:00"); // Monday
    assert_eq!(cal.working_ms_between(from, to), 2 * HOUR);
    assert_eq!(cal.working_ms_between(to, from), 0);
    let holiday = at(&cal, "2026-10-02 10:00");
    assert_eq!(cal.working_ms_between(holiday, holiday + HOUR), 0);
}

#[test]
fn adding_and_measuring_agree() {
    let cal = calendar(SERVICE_DESK);
    let from = at(&cal, "2026-09-29 08:13");
    for hours in [0, 1, 7, 8, 9, 24, 40, 100] {
        let due = cal.add_working_ms(from, hours * HOUR).unwrap();
        assert_eq!(cal.working_ms_between(from, due), hours * HOUR, "{hours} h");
    }
}

#[test]
fn a_calendar_open_around_the_clock_counts_all_time_even_across_daylight_saving() {
    let cal = calendar(ALWAYS);
    // New York moves its clocks forward on 2026-03-08 and back on 2026-11-01.
    for local in ["2026-03-07 12:00", "2026-10-31 12:00", "2026-06-01 00:00"] {
        let from = at(&cal, local);
        assert_eq!(
            cal.add_working_ms(from, 24 * HOUR).unwrap(),
            from + 24 * HOUR
        );
        assert_eq!(cal.working_ms_between(from, from + 48 * HOUR), 48 * HOUR);
    }
}

#[test]
fn a_calendar_answers_the_same_from_the_dates_it_remembers_as_when_first_asked() {
    let first = calendar(SERVICE_DESK);
    let from = at(&first, "2026-09-28 10:30");
    let asked = |cal: &Calendar| {
        (0..200)
            .map(|h| {
                let due = cal.add_working_ms(from, h * HOUR).unwrap();
                (due, cal.working_ms_between(from, due + 17 * MINUTE))
            })
            .collect::<Vec<_>>()
    };
    let answers = asked(&first);
    assert_eq!(
        asked(&first),
        answers,
        "asked again, from what it remembers"
    );
    let copy = first.clone();
    assert_eq!(copy, first, "what a calendar remembers is not part of it");
    assert_eq!(asked(&copy), answers, "a copy works its dates out afresh");
    assert_eq!(asked(&calendar(SERVICE_DESK)), answers);
}

#[test]
fn the_local_date_of_an_instant_is_the_time_zones_even_on_days_the_clocks_change() {
    // New York changes at 02:00; Havana at midnight, so that a local midnight is skipped in
    // March; Santiago turns its clocks back from midnight to 23:00 in April, so that the hour
    // before midnight comes twice; Goose Bay turned them back from 00:01 to 23:01 in 2010, so
    // that a date's first minute came before the previous date's last hour; Shanghai never.
    const CHANGES: [(&str, &str); 5] = [
        ("2026-03-06 00:00", "2026-03-10 00:00"),
        ("2026-04-02 00:00", "2026-04-07 00:00"),
        ("2026-09-04 00:00", "2026-09-08 00:00"),
        ("2026-10-30 00:00", "2026-11-03 00:00"),
        ("2010-11-05 00:00", "2010-11-09 00:00"),
    ];
    for zone in [
        "America/New_York",
        "America/Havana",
        "America/Santiago",
        "America/Goose_Bay",
        "Asia/Shanghai",
    ] {
        let mut cal = calendar(ALWAYS);
        cal.time_zone = zone.parse().unwrap();
        for (from, to) in CHANGES {
            let (from, to) = (at(&cal, from), at(&cal, to));
            // Forward every seven minutes, each instant followed by the one an hour and a
            // minute before it (on a date remembered, or in an hour the clocks repeat), then
            // back and forth across the range.
            let forward = (from..to)
                .step_by(7 * MINUTE as usize)
                .flat_map(|ms| [ms, ms - HOUR - MINUTE]);
            let zigzag = (0..500).map(|i| {
                if i % 2 == 0 {
                    from + i * 13 * MINUTE
                } else {
                    to - i * 11 * MINUTE
                }
            });
            for ms in forward.chain(zigzag).chain([from - 1, to, to - 1]) {
                assert_eq!(
                    cal.walk().local_date(ms),
                    cal.zone_date(ms),
                    "{zone} at {ms}"
                );
            }
        }
    }
}

#[test]
fn a_calendar_without_working_time_ahead_is_an_error_not_a_hang() {
    let mut cal = calendar(SERVICE_DESK);
    cal.week = Default::default();
    cal.working_days.clear();
    let from = at(&cal, "2026-09-29 08:00");
    assert_eq!(
        cal.add_working_ms(from, HOUR),
        Err(NoWorkingTime("service-desk".into()))
    );
}

fn problems(yaml: &str) -> Vec<String> {
    parse_calendar("c.yaml", yaml)
        .expect_err("refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn mistakes_in_a_calendar_file_are_reported_at_their_line_and_column() {
    let yaml = "calendar: x\ntime_zone: Asia/Shangai\nweek:\n  thur: [\"09:00-18:00\"]\n  fri: [\"18:00-09:00\", \"08:00-12:00\"]\nholidays:\n  - 2026-13-01\n  - { from: 2026-10-07, to: 2026-10-01 }\nworking_days:\n  - { date: 2026-10-10, hours_of: sun }\nholiday: []\n";
    let got = problems(yaml);
    assert_eq!(
        got,
        [
            "c.yaml:11:1: unknown field `holiday`, expected one of `calendar`, `title`, `time_zone`, `week`, `holidays`, `working_days`"
        ],
        "an unknown key is reported alone, first"
    );
    let got = problems(&yaml.replace("holiday: []\n", ""));
    let expected = [
        "c.yaml:2:12: unknown time zone `Asia/Shangai`; use an IANA name such as `Asia/Shanghai`",
        "c.yaml:5:9: `18:00-09:00` is not a period of the day such as `08:30-12:00`",
        "c.yaml:4:3: unknown weekday `thur` (use mon, tue, wed, thu, fri, sat, sun); did you mean `thu`?",
        "c.yaml:7:5: `2026-13-01` is not a date such as `2026-10-01`",
        "c.yaml:8:5: the holiday ends (2026-10-01) before it starts (2026-10-07)",
        "c.yaml:10:5: 2026-10-10 takes the hours of Sun, which has no working hours",
    ];
    for e in expected {
        assert!(got.iter().any(|g| g == e), "missing `{e}` in {got:#?}");
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
}

#[test]
fn overlapping_periods_and_a_date_both_off_and_worked_are_refused() {
    let yaml = "calendar: x\ntime_zone: UTC\nweek:\n  mon: [\"09:00-12:00\", \"11:00-13:00\"]\nholidays: [2026-10-05]\nworking_days: [2026-10-05]\n";
    assert_eq!(
        problems(yaml),
        [
            "c.yaml:4:24: `11:00-13:00` overlaps or precedes the period before it; list periods in order",
            "c.yaml:6:16: 2026-10-05 is both a holiday and a working day",
        ]
    );
}

#[test]
fn a_calendar_with_no_working_hours_is_refused() {
    assert_eq!(
        problems("calendar: x\ntime_zone: UTC\n"),
        ["c.yaml:1:1: the calendar has no working hours on any weekday"]
    );
}

#[test]
fn the_shipped_calendars_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calendars");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let cal =
            parse_calendar(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e:#?}"));
        ids.push(cal.id);
    }
    ids.sort();
    assert_eq!(ids, ["24x7", "service-desk"]);
}
