//! The owner's orientation (issue 18, `otc_ui::orient`): a screen turned
//! upside down sends every pixel turned to the display (what the emulator
//! page and a panel show) and turns touches back; a touch correction moves
//! taps before they hit anything; a target step answers where a tap
//! landed, in panel pixels.

mod common;
use common::*;
use otc_ui::*;

fn turned(f: &Frame) -> Vec<u16> {
    f.pixels.iter().rev().copied().collect()
}

/// Asserts two frames' pixels are equal, saying how many differ (not
/// printing 384 000 pixels).
fn same_pixels(got: &[u16], want: &[u16], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    let differ = got.iter().zip(want).filter(|(a, b)| a != b).count();
    assert!(
        differ == 0,
        "{what}: {differ} of {} pixels differ",
        got.len()
    );
}

#[test]
fn upside_down_turns_every_pixel_and_touches_follow() {
    let mut rig = Rig::new(800, 480);
    rig.handle.set_home(home());
    rig.step();
    let upright = rig.screen.frame();
    assert!(rig.trace().upside_down.is_none());
    let json = rig.trace().to_json();
    assert!(
        !json.contains("upside_down"),
        "left out when upright: {json}"
    );

    rig.handle.set_orientation(Orientation {
        upside_down: true,
        ..Default::default()
    });
    rig.step();
    let shown = rig.screen.frame();
    same_pixels(
        &shown.pixels,
        &turned(&upright),
        "the display got the frame turned",
    );
    let t = rig.trace();
    assert_eq!(t.upside_down, Some([800, 480]));
    assert_eq!(t.screen, "home");

    // A finger on About where the panel shows it (the turned place) opens it.
    let about = t.button("About").expect("About").clone();
    let (px, py) = t.panel_point(about.center());
    assert_ne!((px, py), about.center());
    rig.script.tap(px, py);
    rig.step();
    assert_eq!(rig.trace().screen, "about", "{}", rig.trace().to_json());
    // The about screen too reaches the display turned.
    let about_frame = rig.screen.frame();
    let mut upright_again = Rig::new(800, 480);
    upright_again.handle.set_home(home());
    upright_again.step();
    upright_again.tap("About");
    assert_eq!(upright_again.trace().screen, "about");
    same_pixels(
        &about_frame.pixels,
        &turned(&upright_again.screen.frame()),
        "About reaches the display turned",
    );

    // Back the right way up: the display gets the upright frame again.
    rig.handle.set_orientation(Orientation::default());
    rig.step();
    same_pixels(
        &rig.screen.frame().pixels,
        &upright_again.screen.frame().pixels,
        "upright again",
    );
    assert!(rig.trace().upside_down.is_none());
}

#[test]
fn a_touch_correction_moves_taps_before_they_hit_anything() {
    let mut rig = Rig::new(800, 480);
    rig.handle.set_home(home());
    rig.step();
    let about = rig.trace().button("About").expect("About").clone();
    let (cx, cy) = about.center();
    // A panel that reports every touch 70 px too low: About's centre comes
    // in below the button.
    let off = 70;
    assert!(about.h / 2 < off);
    rig.script.tap(cx, cy + off);
    rig.step();
    assert_ne!(rig.trace().screen, "about", "the offset tap misses About");
    // Whatever it hit, start again from home.
    let mut rig = Rig::new(800, 480);
    rig.handle.set_home(home());
    rig.handle.set_orientation(Orientation {
        upside_down: false,
        touch: Affine {
            f: -f64::from(off),
            ..Affine::IDENTITY
        },
    });
    rig.step();
    rig.script.tap(cx, cy + off);
    rig.step();
    assert_eq!(rig.trace().screen, "about", "the corrected tap opens About");
}

#[test]
fn a_target_step_answers_where_the_tap_landed_in_panel_pixels() {
    for upside_down in [false, true] {
        let mut rig = Rig::new(800, 480);
        rig.handle.set_orientation(Orientation {
            upside_down,
            ..Default::default()
        });
        let ticket = rig.handle.ask_choice(ChoiceRequest {
            screen: "touch-check".into(),
            title: "Touch check".into(),
            lines: vec!["Tap the target Top.".into()],
            choices: vec!["ignored".into()],
            cancel: Some("ignored too".into()),
            target: Some(Target {
                label: "Top".into(),
                x_permille: 250,
                y_permille: 300,
            }),
            ..Default::default()
        });
        rig.step();
        let t = rig.trace();
        assert_eq!(t.screen, "touch-check");
        let labels: Vec<&str> = t.buttons.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["Top"], "a target step shows only its target");
        let b = t.button("Top").expect("the target").clone();
        assert_eq!(b.id, "target");
        assert_eq!(b.center(), (200, 144), "the target's centre is its pixel");
        let target = t.panel_point(b.center());
        // A tap well off the target (no button there) still answers.
        let at = (target.0 + 25, target.1.saturating_sub(90));
        rig.script.tap(at.0, at.1);
        rig.step();
        assert_eq!(
            ticket.wait_timeout(std::time::Duration::from_secs(5)),
            Some(ChoiceAnswer::Tapped {
                at,
                target,
                size: (800, 480)
            }),
            "upside_down = {upside_down}"
        );
    }
}
