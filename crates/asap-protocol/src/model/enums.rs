//! Enumerations of the protocol (wire spec section 5.3).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::validation::{Checked, Loc, enumeration};

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, literal = $literal:expr, { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }

            pub(crate) fn validate(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
                enumeration(value, loc, &[$(($wire, $name::$variant)),+], $literal)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    other => Err(format!("unknown {} value {other:?}", stringify!($name))),
                }
            }
        }
    };
}

wire_enum! {
    /// Where a task is in its lifecycle (see [`crate::model::state_machine`]).
    TaskStatus, literal = false, {
        /// Accepted, not started.
        Submitted = "submitted",
        /// Running.
        Working = "working",
        /// Finished successfully (terminal).
        Completed = "completed",
        /// Finished with an error (terminal).
        Failed = "failed",
        /// Stopped on request (terminal).
        Cancelled = "cancelled",
        /// Waiting for more input from the requester.
        InputRequired = "input_required",
    }
}

impl TaskStatus {
    /// Whether no transition leaves this state: `completed`, `failed`, `cancelled`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

wire_enum! {
    /// The kind of a [`crate::model::TaskUpdate`].
    UpdateType, literal = false, {
        /// Progress report.
        Progress = "progress",
        /// The task needs input.
        InputRequired = "input_required",
        /// The task's status changed.
        StatusChange = "status_change",
    }
}

wire_enum! {
    /// Who wrote a message.
    MessageRole, literal = false, {
        /// A human or requesting agent.
        User = "user",
        /// The answering agent.
        Assistant = "assistant",
        /// System instructions.
        System = "system",
    }
}

wire_enum! {
    /// The state a [`crate::model::MessageAck`] reports (ADR-16).
    AckStatus, literal = true, {
        /// The envelope arrived.
        Received = "received",
        /// Its handler finished.
        Processed = "processed",
        /// It was refused; `error` says why.
        Rejected = "rejected",
    }
}

wire_enum! {
    /// The verification state of a 2.x manifest ([`crate::model::VerificationStatus`]).
    VerificationState, literal = false, {
        /// Verified by the registry.
        Verified = "verified",
        /// Waiting for review.
        Pending = "pending",
        /// Refused.
        Rejected = "rejected",
    }
}

wire_enum! {
    /// The kind of hardware hosting an agent ([`crate::model::HardwareCapability`], 2.x).
    HardwareClass, literal = false, {
        /// A cloud machine.
        Cloud = "cloud",
        /// A single-board computer.
        Sbc = "sbc",
        /// An edge accelerator board.
        EdgeAccelerator = "edge_accelerator",
        /// A microcontroller.
        Microcontroller = "microcontroller",
        /// A desktop computer.
        Desktop = "desktop",
    }
}

wire_enum! {
    /// A physical I/O interface of an agent's hardware ([`crate::model::HardwareCapability`], 2.x).
    HardwareIoType, literal = false, {
        /// General-purpose I/O pins.
        Gpio = "gpio",
        /// I2C bus.
        I2c = "i2c",
        /// SPI bus.
        Spi = "spi",
        /// Serial port.
        Uart = "uart",
        /// CSI camera.
        CsiCamera = "csi_camera",
        /// USB camera.
        UsbCamera = "usb_camera",
        /// Audio input.
        AudioIn = "audio_in",
        /// Audio output.
        AudioOut = "audio_out",
        /// Bluetooth.
        Bluetooth = "bluetooth",
        /// LoRa radio.
        Lora = "lora",
        /// Bluetooth Low Energy.
        Ble = "ble",
    }
}

wire_enum! {
    /// Where an agent runs inference ([`crate::model::InferenceCapability`], 2.x).
    InferenceMode, literal = false, {
        /// A cloud service.
        Cloud = "cloud",
        /// Local, on the CPU.
        LocalCpu = "local_cpu",
        /// Local, on a CUDA GPU.
        LocalCuda = "local_cuda",
        /// Local, on Apple Metal.
        LocalMetal = "local_metal",
        /// Local, on an NPU.
        LocalNpu = "local_npu",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_values_and_errors() {
        assert_eq!(
            TaskStatus::validate(&json!("input_required"), &Loc::Root).unwrap(),
            TaskStatus::InputRequired
        );
        let e = TaskStatus::validate(&json!("COMPLETED"), &Loc::Root)
            .unwrap_err()
            .remove(0);
        assert_eq!(e.kind.type_name(), "enum");
        assert_eq!(
            e.kind.message(),
            "Input should be 'submitted', 'working', 'completed', 'failed', 'cancelled' or 'input_required'"
        );
        let e = AckStatus::validate(&json!(1), &Loc::Root)
            .unwrap_err()
            .remove(0);
        assert_eq!(e.kind.type_name(), "literal_error");
        assert_eq!(
            e.kind.message(),
            "Input should be 'received', 'processed' or 'rejected'"
        );
        assert_eq!("working".parse::<TaskStatus>(), Ok(TaskStatus::Working));
        assert!("Working".parse::<TaskStatus>().is_err());
        assert_eq!(MessageRole::System.to_string(), "system");
        assert_eq!(UpdateType::ALL.len(), 3);
        assert!(TaskStatus::Cancelled.is_terminal() && !TaskStatus::InputRequired.is_terminal());
    }
}
